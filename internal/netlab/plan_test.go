package netlab

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{Prefix: "p2f", Clients: 3}, ""},
		{"empty prefix", Config{Clients: 1}, "prefix"},
		{"long prefix", Config{Prefix: "abcdefghi", Clients: 1}, "prefix"},
		{"upper-case prefix", Config{Prefix: "P2f", Clients: 1}, "prefix"},
		{"prefix with a dash", Config{Prefix: "p-f", Clients: 1}, "prefix"},
		{"negative clients", Config{Prefix: "p2f", Clients: -1}, "clients"},
		{"public subnet", Config{Prefix: "p2f", Clients: 1, Subnet: netip.MustParsePrefix("8.8.0.0/16")}, "private"},
		{"subnet too small", Config{Prefix: "p2f", Clients: 3, Subnet: netip.MustParsePrefix("10.9.9.0/30")}, "room"},
		{"subnet just big enough", Config{Prefix: "p2f", Clients: 1, Subnet: netip.MustParsePrefix("10.9.9.0/30")}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.cfg.withDefaults()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one about %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Up != DefaultUp || cfg.Down != DefaultDown {
				t.Errorf("shapes %+v %+v, want the defaults", cfg.Up, cfg.Down)
			}
		})
	}
}

func TestNodes(t *testing.T) {
	cfg, err := Config{Prefix: "lab", Clients: 300}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	nodes := cfg.nodes()
	if len(nodes) != 301 {
		t.Fatalf("%d nodes, want 301", len(nodes))
	}
	want := map[int]Node{
		0:   {"lab-s", netip.MustParseAddr("10.77.0.1")},
		1:   {"lab-c1", netip.MustParseAddr("10.77.0.2")},
		254: {"lab-c254", netip.MustParseAddr("10.77.0.255")},
		255: {"lab-c255", netip.MustParseAddr("10.77.1.0")},
		300: {"lab-c300", netip.MustParseAddr("10.77.1.45")},
	}
	for i, w := range want {
		if nodes[i] != w {
			t.Errorf("node %d = %+v, want %+v", i, nodes[i], w)
		}
	}
	seen := map[netip.Addr]bool{}
	for _, n := range nodes {
		if len(n.Name) > 15 {
			t.Errorf("%s: longer than an interface name may be", n.Name)
		}
		if seen[n.Addr] || !cfg.Subnet.Contains(n.Addr) {
			t.Errorf("%s: address %s repeated or outside %s", n.Name, n.Addr, cfg.Subnet)
		}
		seen[n.Addr] = true
	}
}

func TestSetupCommands(t *testing.T) {
	cfg, err := Config{Prefix: "lab", Clients: 2}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	cmds := cfg.setupCommands()
	var lines []string
	for _, c := range cmds {
		lines = append(lines, strings.Join(c, " "))
	}
	for _, want := range []string{
		"ip link add lab-br type bridge",
		"ip netns add lab-s",
		"ip -n lab-s addr add 10.77.0.1/16 dev eth0",
		"ip link set lab-c2 master lab-br up",
		"ip -n lab-c2 addr add 10.77.0.3/16 dev eth0",
		// Uplink inside the client, downlink on the bridge side.
		"tc -n lab-c1 qdisc add dev eth0 root tbf rate 10000000bit burst 32768 latency 100ms",
		"tc qdisc add dev lab-c1 root tbf rate 50000000bit burst 65536 latency 100ms",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("no %q in\n%s", want, strings.Join(lines, "\n"))
		}
	}
	for _, l := range lines {
		// Nothing routes, and the root namespace gets no address.
		if strings.Contains(l, "route") || (strings.Contains(l, "addr add") && !strings.HasPrefix(l, "ip -n ")) {
			t.Errorf("command %q could let traffic leave the lab", l)
		}
		if strings.HasPrefix(l, "tc") && strings.Contains(l, "lab-s") {
			t.Errorf("command %q shapes the server", l)
		}
	}
	cfg.Unshaped = true
	for _, c := range cfg.setupCommands() {
		if c[0] == "tc" {
			t.Errorf("unshaped lab runs %q", strings.Join(c, " "))
		}
	}
}

func TestOwned(t *testing.T) {
	names := []string{"lo", "eth0", "lab-br", "lab-s", "lab-c1", "lab-c20", "lab-cx", "lab-c", "lab-c+1",
		"labx-c1", "lab2-c1", "lab-br0", "other-br", "docker0"}
	got := owned("lab", names)
	want := []string{"lab-br", "lab-s", "lab-c1", "lab-c20"}
	if !slices.Equal(got, want) {
		t.Errorf("owned = %q, want %q", got, want)
	}
}

func TestNeighThresholds(t *testing.T) {
	tests := []struct {
		nodes int
		old   [3]int
		want  [3]int
	}{
		{6, [3]int{128, 512, 1024}, [3]int{128, 512, 1024}},
		{21, [3]int{128, 512, 1024}, [3]int{441, 882, 1764}},
		{51, [3]int{128, 512, 1024}, [3]int{2601, 5202, 10404}},
		{21, [3]int{4096, 8192, 16384}, [3]int{4096, 8192, 16384}},
	}
	for _, tc := range tests {
		if got := neighThresholds(tc.nodes, tc.old); got != tc.want {
			t.Errorf("neighThresholds(%d, %v) = %v, want %v", tc.nodes, tc.old, got, tc.want)
		}
	}
}
