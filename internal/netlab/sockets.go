package netlab

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TCPConn is one of a process's TCP sockets.
type TCPConn struct {
	Local, Remote netip.AddrPort
	// Established is state 01; a listener is not.
	Established bool
}

// TCPConns lists the process's IPv4 TCP sockets: its socket inodes from
// /proc/PID/fd, matched against its namespace's /proc/PID/net/tcp. That
// file can block for a long time on a loaded machine
// (shared/notes/network-lab.md), so the read gives up when ctx ends; the
// reading goroutine then ends when the kernel answers.
func (p *Proc) TCPConns(ctx context.Context) ([]TCPConn, error) {
	dir := "/proc/" + strconv.Itoa(p.PID)
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return nil, fmt.Errorf("netlab: %s sockets: %w", p.Name, err)
	}
	inodes := make(map[uint64]bool)
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if err != nil {
			continue // closed since the listing
		}
		if s, ok := strings.CutPrefix(target, "socket:["); ok {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				inodes[ino] = true
			}
		}
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := os.ReadFile(filepath.Join(dir, "net", "tcp"))
		ch <- result{b, err}
	}()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("netlab: %s sockets: %w", p.Name, ctx.Err())
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("netlab: %s sockets: %w", p.Name, r.err)
		}
		all, err := parseProcNetTCP(string(r.b))
		if err != nil {
			return nil, fmt.Errorf("netlab: %s sockets: %w", p.Name, err)
		}
		var mine []TCPConn
		for _, s := range all {
			if inodes[s.inode] {
				mine = append(mine, s.TCPConn)
			}
		}
		return mine, nil
	}
}

type procTCP struct {
	TCPConn
	inode uint64
}

// parseProcNetTCP reads /proc/net/tcp: after a header line, one socket a
// line, "sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...",
// addresses as little-endian hex IPv4 and big-endian hex port.
func parseProcNetTCP(s string) ([]procTCP, error) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) == 0 || !strings.Contains(lines[0], "local_address") {
		return nil, errors.New("net/tcp: no header")
	}
	var out []procTCP
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 10 {
			return nil, fmt.Errorf("net/tcp: %q", line)
		}
		local, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, err
		}
		remote, err := parseHexAddrPort(f[2])
		if err != nil {
			return nil, err
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("net/tcp: inode %q: %w", f[9], err)
		}
		out = append(out, procTCP{TCPConn{Local: local, Remote: remote, Established: f[3] == "01"}, ino})
	}
	return out, nil
}

func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	b, err := hex.DecodeString(a)
	if !ok || err != nil || len(b) != 4 {
		return netip.AddrPort{}, fmt.Errorf("net/tcp: address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("net/tcp: port %q: %w", s, err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]}), uint16(port)), nil
}
