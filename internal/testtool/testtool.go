package testtool

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Require returns the path of the named program, or skips (fails in CI).
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed, and CI is set: .ci/run must install it", name)
	}
	t.Skipf("skipping: %s is not installed (CI installs it; apt-get install it to run this test)", name)
	return ""
}

// freeLoopbackAddr returns 127.0.0.1:PORT with a port that was free a
// moment ago, for a server the test starts.
func freeLoopbackAddr(t testing.TB) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr)
}

// runUntilReady starts cmd, a server, for the test (it is killed when the
// test ends) and polls ready until it reports true. It fails the test if
// the server exits first or is not ready within timeout, with what log
// returns then.
func runUntilReady(t testing.TB, cmd *exec.Cmd, timeout time.Duration, ready func() bool, log func() string) {
	t.Helper()
	name := cmd.Args[0]
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	for deadline := time.Now().Add(timeout); !ready(); time.Sleep(20 * time.Millisecond) {
		select {
		case <-done:
			t.Fatalf("%s exited before answering: %v\n%s", name, waitErr, log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within %v\n%s", name, timeout, log())
		}
	}
}
