// Command fleet is the fleet benchmark of issue 12: the built p2sp binary
// in a network lab (package netlab): tracker and origin (rate-limited, 100
// Mbit/s by default) in a server namespace, N client namespaces on one
// bridge, each with one proxy and one player behind a home-broadband link
// shaped with tbf (10 Mbit/s up, 50 down). Nothing can leave the machine:
// the bridge has no address and no namespace has a default route.
//
//	go run ./bench/fleet -scenario crowd -n 20 -size 100MB
//	go run ./bench/fleet -scenario viewers -n 20 -bitrate 4e6 -duration 120s
//	go run ./bench/fleet -scenario seek -n 10 -seeks 4
//
// Scenarios: crowd (all N download the whole file at once), viewers (one
// joins every -join and plays -duration at -bitrate; a stall is a read
// that completes more than a second after its playback deadline) and seek
// (viewers who jump to random offsets). Players are this binary re-run
// with -player inside each client namespace, one long-lived process each,
// reading the proxy's 127.0.0.1 URL and hashing what they read; every read
// is checked against the source's SHA-256.
//
// It prints one Markdown table a run: origin egress (copies of the file
// and viewers' worth, from the origin's p2sp_origin_sent_bytes_total),
// completion against the ideal, stalls, TTFB, peer share (the proxies'
// /v1/status), bytes on the clients' downlinks against what the players
// needed (the veths' counters), CPU and peak RSS per proxy (/proc) and
// BitTorrent connections per proxy (its sockets, sampled every 2 s). Every
// scenario has a deadline and stops by itself; the lab is torn down by
// name, also after a failure or Ctrl-C. It needs root. The exit status is
// non-zero when a read was not byte-identical or something failed; it
// asserts no speed. -json FILE writes the raw figures for tests.
package main
