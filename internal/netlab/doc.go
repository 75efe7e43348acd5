// Package netlab builds a small network of Linux network namespaces on one
// machine, for benchmarks and tests that need more than loopback: a bridge
// with no address in the root namespace, one server namespace and N client
// namespaces on a private subnet, each client's link shaped like home
// broadband with tbf (uplink on the namespace side of its veth, downlink on
// the bridge side). No namespace has a default route, so nothing it sends
// can leave the machine.
//
// Everything is named with one prefix and deleted by name: by Close, when
// New fails half-way, and at the start of a run whose predecessor crashed
// with the same prefix. Processes run inside a namespace through
// `ip netns exec` as children of the Lab, which ends them by PID (and the
// kernel kills them if the owner dies first). The owner reaches a
// namespace's sockets without spawning anything, by dialing from a thread
// moved into it (Node.DialContext), and reads its processes' CPU, memory
// and sockets from /proc.
//
// It needs root, ip(8) and tc(8); Available says why a machine cannot run
// it. Facts about the kernels it was measured on are in the project's
// shared notes (network-lab.md): tbf and htb exist, netem does not, and the
// neighbour table overflows at about 50 namespaces unless its thresholds
// are raised, which New does for the run.
package netlab
