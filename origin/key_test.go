package origin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSigningKeyKept: the key is made once in the data directory and used
// again on restart, so that proxies that pinned it keep trusting the
// origin; a key file of another kind is an error, not a new key.
func TestSigningKeyKept(t *testing.T) {
	dir := t.TempDir()
	newServer := func(cfg Config) (*Server, error) {
		cfg.Media, cfg.Token = t.TempDir(), testToken
		s, err := New(cfg)
		if err == nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}
	a, err := newServer(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	b, err := newServer(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !a.PublicKey().Equal(b.PublicKey()) {
		t.Error("a restarted origin signs with a new key")
	}
	c, err := newServer(Config{KeyFile: filepath.Join(dir, KeyFileName)})
	if err != nil || !c.PublicKey().Equal(a.PublicKey()) {
		t.Errorf("--key-file with the same file: %v", err)
	}
	if d, err := newServer(Config{}); err != nil || d.PublicKey().Equal(a.PublicKey()) {
		t.Errorf("no data dir: a key of its own expected: %v", err)
	}
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
	if _, err := newServer(Config{KeyFile: bad}); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("a certificate as key file: %v", err)
	}
}
