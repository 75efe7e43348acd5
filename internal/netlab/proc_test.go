package netlab

import (
	"net/netip"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		{"plain", "1234 (p2sp) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 9 0 100 0 0", 3800 * time.Millisecond, false},
		{"name with spaces and parens", "99 (a) b) (c) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 0 0", 100 * time.Millisecond, false},
		{"no name", "1234 p2sp S 1", 0, true},
		{"truncated", "1234 (p2sp) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 3 0", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.stat)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseStatCPU = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseStatusMem(t *testing.T) {
	status := "Name:\tp2sp\nVmPeak:\t 1000 kB\nVmHWM:\t   54000 kB\nVmRSS:\t   40000 kB\nThreads:\t9\n"
	rss, hwm, err := parseStatusMem(status)
	if err != nil || rss != 40000<<10 || hwm != 54000<<10 {
		t.Errorf("parseStatusMem = %d, %d, %v", rss, hwm, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmHWM:\t1 MB\nVmRSS:\t1 kB\n", "VmHWM:\tx kB\nVmRSS:\t1 kB\n"} {
		if _, _, err := parseStatusMem(bad); err == nil {
			t.Errorf("parseStatusMem(%q): no error", bad)
		}
	}
}

func TestParseProcNetTCP(t *testing.T) {
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F9A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 02004D0A:1AE1 03004D0A:C350 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1
`
	got, err := parseProcNetTCP(table)
	if err != nil {
		t.Fatal(err)
	}
	want := []procTCP{
		{TCPConn{netip.MustParseAddrPort("127.0.0.1:8090"), netip.MustParseAddrPort("0.0.0.0:0"), false}, 1001},
		{TCPConn{netip.MustParseAddrPort("10.77.0.2:6881"), netip.MustParseAddrPort("10.77.0.3:50000"), true}, 1002},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("socket %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "no header\n", "local_address\n 0: zz:1 00000000:0000 01 a b c d e 5\n", "local_address\n 0: 0100007F:1 00000000:0000 01\n"} {
		if _, err := parseProcNetTCP(bad); err == nil {
			t.Errorf("parseProcNetTCP(%q): no error", bad)
		}
	}
}
