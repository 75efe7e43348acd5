package netlab

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Shape is a tbf qdisc: a rate, the bucket it may burst from, and how long
// a packet may wait in its queue before it is dropped.
type Shape struct {
	Bits    int64 // bits per second; 0 leaves the link unshaped
	Burst   int   // bytes
	Latency time.Duration
}

// The shapes measured on these machines (shared/notes/network-lab.md):
// 9.66 Mbit/s of payload up and 47.9 down.
var (
	DefaultUp   = Shape{Bits: 10_000_000, Burst: 32 << 10, Latency: 100 * time.Millisecond}
	DefaultDown = Shape{Bits: 50_000_000, Burst: 64 << 10, Latency: 100 * time.Millisecond}
)

// BytesPerSecond is the shape's rate in bytes.
func (s Shape) BytesPerSecond() float64 { return float64(s.Bits) / 8 }

// tbf is the qdisc's arguments to tc.
func (s Shape) tbf() []string {
	return []string{"tbf", "rate", strconv.FormatInt(s.Bits, 10) + "bit",
		"burst", strconv.Itoa(s.Burst), "latency", strconv.FormatInt(s.Latency.Milliseconds(), 10) + "ms"}
}

// Config says what New builds.
type Config struct {
	// Prefix names everything the lab creates: the bridge PREFIX-br, the
	// namespaces PREFIX-s (server) and PREFIX-c1..PREFIX-cN, whose veths
	// carry the same names on the bridge side. Lower-case letters and
	// digits, at most 8, so that every interface name fits in 15 bytes.
	Prefix string
	// Clients is how many client namespaces there are.
	Clients int
	// Subnet is the one private subnet of all namespaces (default
	// 10.77.0.0/16); the server is its first host address.
	Subnet netip.Prefix
	// Up and Down shape each client's link; a zero Shape means DefaultUp
	// and DefaultDown.
	Up, Down Shape
	// Unshaped leaves the clients' links at veth speed.
	Unshaped bool
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

// withDefaults checks cfg and fills in what was left out.
func (cfg Config) withDefaults() (Config, error) {
	if !prefixRE.MatchString(cfg.Prefix) {
		return cfg, fmt.Errorf("netlab: prefix %q: want 1-8 lower-case letters and digits, starting with a letter", cfg.Prefix)
	}
	if cfg.Clients < 0 || cfg.Clients > 9999 {
		return cfg, fmt.Errorf("netlab: %d clients: want 0-9999", cfg.Clients)
	}
	if !cfg.Subnet.IsValid() {
		cfg.Subnet = netip.MustParsePrefix("10.77.0.0/16")
	}
	if !cfg.Subnet.Addr().Is4() || !cfg.Subnet.Addr().IsPrivate() {
		return cfg, fmt.Errorf("netlab: subnet %s: want a private IPv4 subnet", cfg.Subnet)
	}
	cfg.Subnet = cfg.Subnet.Masked()
	if hosts := uint64(1)<<(32-cfg.Subnet.Bits()) - 2; uint64(cfg.Clients)+1 > hosts {
		return cfg, fmt.Errorf("netlab: subnet %s has room for %d hosts, not %d", cfg.Subnet, hosts, cfg.Clients+1)
	}
	if !cfg.Unshaped {
		if cfg.Up.Bits == 0 {
			cfg.Up = DefaultUp
		}
		if cfg.Down.Bits == 0 {
			cfg.Down = DefaultDown
		}
	}
	return cfg, nil
}

// Node is one namespace of the lab.
type Node struct {
	// Name is the namespace's name and its veth's on the bridge side.
	Name string
	// Addr is its address on the subnet (on its interface eth0).
	Addr netip.Addr
}

// nodeIf is the name of every namespace's own end of its veth.
const nodeIf = "eth0"

func (cfg Config) bridge() string { return cfg.Prefix + "-br" }

// nodes lists the server, then the clients.
func (cfg Config) nodes() []Node {
	nodes := make([]Node, 0, cfg.Clients+1)
	base := cfg.Subnet.Addr().As4()
	b := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i := 0; i <= cfg.Clients; i++ {
		name := cfg.Prefix + "-s"
		if i > 0 {
			name = cfg.Prefix + "-c" + strconv.Itoa(i)
		}
		a := b + 1 + uint32(i)
		nodes = append(nodes, Node{Name: name, Addr: netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})})
	}
	return nodes
}

// setupCommands is what New runs, in order: the bridge, then per node its
// namespace, veth, address and, for clients, the two tbf qdiscs. No
// command adds an address in the root namespace or a route anywhere.
func (cfg Config) setupCommands() [][]string {
	br := cfg.bridge()
	cmds := [][]string{
		{"ip", "link", "add", br, "type", "bridge"},
		{"ip", "link", "set", br, "up"},
	}
	for i, n := range cfg.nodes() {
		addr := n.Addr.String() + "/" + strconv.Itoa(cfg.Subnet.Bits())
		cmds = append(cmds,
			[]string{"ip", "netns", "add", n.Name},
			[]string{"ip", "link", "add", n.Name, "type", "veth", "peer", "name", nodeIf, "netns", n.Name},
			[]string{"ip", "link", "set", n.Name, "master", br, "up"},
			[]string{"ip", "-n", n.Name, "link", "set", "lo", "up"},
			[]string{"ip", "-n", n.Name, "addr", "add", addr, "dev", nodeIf},
			[]string{"ip", "-n", n.Name, "link", "set", nodeIf, "up"},
		)
		if i == 0 || cfg.Unshaped {
			continue
		}
		if cfg.Up.Bits > 0 {
			cmds = append(cmds, append([]string{"tc", "-n", n.Name, "qdisc", "add", "dev", nodeIf, "root"}, cfg.Up.tbf()...))
		}
		if cfg.Down.Bits > 0 {
			cmds = append(cmds, append([]string{"tc", "qdisc", "add", "dev", n.Name, "root"}, cfg.Down.tbf()...))
		}
	}
	return cmds
}

// owned picks, from names the system has (namespaces or links), those a
// lab with this prefix creates: PREFIX-br, PREFIX-s and PREFIX-cN.
func owned(prefix string, names []string) []string {
	var mine []string
	for _, name := range names {
		rest, ok := strings.CutPrefix(name, prefix+"-")
		if !ok {
			continue
		}
		if rest == "br" || rest == "s" {
			mine = append(mine, name)
			continue
		}
		if n, ok := strings.CutPrefix(rest, "c"); ok {
			if _, err := strconv.Atoi(n); err == nil && !strings.HasPrefix(n, "+") && !strings.HasPrefix(n, "-") {
				mine = append(mine, name)
			}
		}
	}
	return mine
}

// neighThresholds returns the neighbour table's garbage-collection
// thresholds (gc_thresh1..3) for a lab of nodes namespaces: the table is
// shared by all namespaces, and in a full mesh each of them learns every
// other's address, so it holds about nodes² entries. Thresholds only go up.
func neighThresholds(nodes int, old [3]int) [3]int {
	need := nodes * nodes
	next := old
	for i, mult := range [3]int{1, 2, 4} {
		next[i] = max(old[i], need*mult)
	}
	return next
}
