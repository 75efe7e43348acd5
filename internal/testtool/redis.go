package testtool

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// StartRedis runs Debian's redis-server for the test on a free loopback
// port, without persistence, in a temporary directory, and returns its
// URL (redis://127.0.0.1:PORT/0). The server is killed when the test ends.
// It skips without redis-server (fails in CI).
func StartRedis(t testing.TB) string {
	t.Helper()
	bin := Require(t, "redis-server")
	dir := t.TempDir()
	a := freeLoopbackAddr(t)
	addr := a.String()
	logFile := filepath.Join(dir, "redis.log")
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(a.Port), "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", logFile, "--loglevel", "warning")
	runUntilReady(t, cmd, 10*time.Second, func() bool { return ping(addr) }, func() string {
		log, _ := os.ReadFile(logFile)
		return string(log)
	})
	return "redis://" + addr + "/0"
}

// ping reports whether a Redis on addr answers PING.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}
