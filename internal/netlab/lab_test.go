package netlab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as a program to run inside a namespace: with
// NETLAB_TEST_ECHO=ADDR it echoes lines on a TCP listener at ADDR.
func TestMain(m *testing.M) {
	if addr := os.Getenv("NETLAB_TEST_ECHO"); addr != "" {
		os.Exit(echo(addr))
	}
	os.Exit(m.Run())
}

func echo(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("listening")
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func requireLab(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v, and CI is set (CI runs as root with iproute2)", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// TestLab builds a lab of two clients, runs a program in the server
// namespace, reaches it from a client namespace across the bridge, and
// leaves nothing behind.
func TestLab(t *testing.T) {
	requireLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const prefix = "nltest"
	lab, err := New(ctx, Config{Prefix: prefix, Clients: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })

	// No namespace can route anywhere but the subnet, and the bridge has
	// no address.
	for _, n := range append([]Node{lab.Server}, lab.Clients...) {
		out, err := exec.CommandContext(ctx, "ip", "-n", n.Name, "route", "show", "default").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("%s: default route %q (%v)", n.Name, out, err)
		}
		// Asking the kernel for a route sends nothing.
		if out, err := exec.CommandContext(ctx, "ip", "-n", n.Name, "route", "get", "192.0.2.1").CombinedOutput(); err == nil {
			t.Errorf("%s has a route out of the lab: %s", n.Name, out)
		}
	}
	if out, _ := exec.CommandContext(ctx, "ip", "-4", "addr", "show", "dev", prefix+"-br").Output(); strings.Contains(string(out), "inet ") {
		t.Errorf("bridge has an address:\n%s", out)
	}
	out, err := exec.CommandContext(ctx, "tc", "-n", lab.Clients[0].Name, "qdisc", "show", "dev", "eth0").Output()
	if err != nil || !strings.Contains(string(out), "rate 10Mbit") {
		t.Errorf("client uplink qdisc %q (%v), want tbf at 10Mbit", out, err)
	}
	out, err = exec.CommandContext(ctx, "tc", "qdisc", "show", "dev", lab.Clients[0].Name).Output()
	if err != nil || !strings.Contains(string(out), "rate 50Mbit") {
		t.Errorf("client downlink qdisc %q (%v), want tbf at 50Mbit", out, err)
	}

	addr := lab.Server.Addr.String() + ":7000"
	pr, pw := io.Pipe()
	proc, err := lab.Start(lab.Server, Cmd{Args: []string{os.Args[0]}, Env: []string{"NETLAB_TEST_ECHO=" + addr}, Stdout: pw, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || line != "listening\n" {
		t.Fatalf("echo server said %q, %v", line, err)
	}
	go io.Copy(io.Discard, pr)

	before, err := lab.Counters(lab.Clients[1])
	if err != nil {
		t.Fatal(err)
	}
	conn, err := lab.Clients[1].DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.LocalAddr().(*net.TCPAddr).IP.String(); got != lab.Clients[1].Addr.String() {
		t.Errorf("connection from %s, want the client's address %s", got, lab.Clients[1].Addr)
	}
	msg := strings.Repeat("x", 100_000) + "\n"
	go conn.Write([]byte(msg))
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || got != msg {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	after, err := lab.Counters(lab.Clients[1])
	if err != nil {
		t.Fatal(err)
	}
	if after.Received-before.Received < int64(len(msg)) || after.Sent-before.Sent < int64(len(msg)) {
		t.Errorf("client counters moved by %+v / %+v, want at least %d each way", before, after, len(msg))
	}
	conns, err := proc.TCPConns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var established, listening int
	for _, c := range conns {
		if c.Established && c.Remote.Addr() == lab.Clients[1].Addr {
			established++
		}
		if !c.Established && c.Local.String() == addr {
			listening++
		}
	}
	if established != 1 || listening != 1 {
		t.Errorf("server sockets %+v: want one listener and one connection from the client", conns)
	}
	u, err := proc.Usage()
	if err != nil || u.PeakRSS <= 0 || u.RSS <= 0 {
		t.Errorf("usage %+v, %v", u, err)
	}

	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-proc.Done():
	default:
		t.Error("the echo server still runs after Close")
	}
	nss, _ := readNames(netnsDir)
	links, _ := readNames("/sys/class/net")
	if left := owned(prefix, append(nss, links...)); len(left) > 0 {
		t.Errorf("left behind: %q", left)
	}
}

// TestNewCleansLeftovers: a namespace and a bridge a crashed run left with
// the prefix are gone after New, and New's own lab replaces them.
func TestNewCleansLeftovers(t *testing.T) {
	requireLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const prefix = "nlleft"
	for _, argv := range [][]string{{"ip", "netns", "add", prefix + "-c7"}, {"ip", "link", "add", prefix + "-br", "type", "bridge"}} {
		if err := run(ctx, argv...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { Cleanup(context.Background(), prefix) })
	lab, err := New(ctx, Config{Prefix: prefix, Clients: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	nss, _ := readNames(netnsDir)
	if got := owned(prefix, nss); strings.Join(got, ",") != prefix+"-c1,"+prefix+"-s" && strings.Join(got, ",") != prefix+"-s,"+prefix+"-c1" {
		t.Errorf("namespaces %q, want the new lab's two", got)
	}
}
