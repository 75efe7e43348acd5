package proxy

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpclient"
)

// errUntrusted wraps every refusal of a tracker's file info: it does not
// decode or is inconsistent, its signature does not verify, or no origin
// key is known to check it with.
var errUntrusted = errors.New("refused file info")

// pinFileName holds, in the cache directory, the origin key fetched on
// first use.
const pinFileName = "origin-key"

// Key sources, as /v1/status names them.
const (
	keysConfigured = "configured"
	keysPinned     = "pinned"
	keysNone       = "none yet"
)

// maxKeyAnswer bounds the origin's key answer, a key of 44 characters in
// a small JSON object.
const maxKeyAnswer = 4 << 10

// keyRetry is how long a failed fetch of the origin's key is left alone.
const keyRetry = 5 * time.Second

// trust holds the origin keys file info must be signed with: those
// configured, or else the configured origin's own key, fetched once and
// pinned in the cache directory (trust on first use).
type trust struct {
	origin  string
	client  *http.Client
	pinFile string
	log     *slog.Logger

	mu      sync.Mutex
	keys    []ed25519.PublicKey
	source  string
	retryAt time.Time
}

// newTrust uses keys if any, or else the key pinned in cacheDir, if any.
func newTrust(keys []ed25519.PublicKey, origin, cacheDir string, client *http.Client, log *slog.Logger) (*trust, error) {
	t := &trust{origin: origin, client: client, pinFile: filepath.Join(cacheDir, pinFileName), log: log, source: keysNone}
	if len(keys) > 0 {
		t.keys, t.source = keys, keysConfigured
		return t, nil
	}
	b, err := os.ReadFile(t.pinFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return t, nil
	case err != nil:
		return nil, fmt.Errorf("pinned origin key: %w", err)
	}
	k, err := fileinfo.ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("pinned origin key %s: %w", t.pinFile, err)
	}
	t.keys, t.source = []ed25519.PublicKey{k}, keysPinned
	return t, nil
}

// verify checks fi's signature; errors wrap errUntrusted.
func (t *trust) verify(ctx context.Context, fi *fileinfo.Info) error {
	keys, err := t.get(ctx)
	if err == nil {
		err = fi.Verify(keys)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errUntrusted, err)
	}
	return nil
}

// state is what /v1/status shows: the keys and where they came from.
func (t *trust) state() (keys []string, source string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.keys {
		keys = append(keys, fileinfo.EncodeKey(k))
	}
	return keys, t.source
}

// get returns the trusted keys, fetching and pinning the origin's on the
// first call that needs it.
func (t *trust) get(ctx context.Context) ([]ed25519.PublicKey, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.keys) > 0 {
		return t.keys, nil
	}
	if time.Now().Before(t.retryAt) {
		return nil, errors.New("no origin key yet (fetching it from the origin failed moments ago)")
	}
	k, err := t.fetch(ctx)
	if err == nil {
		err = t.pin(k)
	}
	if err != nil {
		t.retryAt = time.Now().Add(keyRetry)
		return nil, fmt.Errorf("no origin key: %w", err)
	}
	t.keys, t.source = []ed25519.PublicKey{k}, keysPinned
	t.log.Warn("pinned the origin's key on first use; file info must be signed with it from now on",
		"origin", t.origin, "key", fileinfo.EncodeKey(k), "file", t.pinFile)
	return t.keys, nil
}

// fetch is GET {origin}/v1/key.
func (t *trust) fetch(ctx context.Context) (ed25519.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.origin+"/v1/key", nil)
	if err != nil {
		return nil, fmt.Errorf("fetch origin key: %w", err)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch origin key: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch origin key: origin answered %s", resp.Status)
	}
	var a struct {
		Ed25519 string `json:"ed25519"`
	}
	if err := httpclient.DecodeJSON(resp, maxKeyAnswer, &a); err != nil {
		return nil, fmt.Errorf("fetch origin key: %w", err)
	}
	return fileinfo.ParseKey(a.Ed25519)
}

// pin writes k to the pin file, whole or not at all.
func (t *trust) pin(k ed25519.PublicKey) error {
	tmp := t.pinFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(fileinfo.EncodeKey(k)+"\n"), 0o600); err != nil {
		return fmt.Errorf("pin origin key: %w", err)
	}
	if err := os.Rename(tmp, t.pinFile); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pin origin key: %w", err)
	}
	return nil
}
