package testtool

import (
	"os"
	"os/exec"
	"testing"
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
