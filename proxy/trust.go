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
	"strconv"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpclient"
)

// errUntrusted wraps every refusal of a tracker's file info: it does not
// decode or is inconsistent, its signature does not verify, or no origin
// key is known to check it with.
var errUntrusted = errors.New("refused file info")

// pinFileName holds, in the cache directory, the key of the first
// configured origin fetched on first use; the second's is pinFileName-2,
// and so on, in the order of the configured origins.
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

// keyRetry is how long a failed fetch of an origin's key is left alone.
const keyRetry = 5 * time.Second

// trust holds the origin keys file info must be signed with: those
// configured, or else each configured origin's own key, fetched once and
// pinned in the cache directory (trust on first use, per origin).
type trust struct {
	client *http.Client
	log    *slog.Logger

	mu         sync.Mutex
	configured []ed25519.PublicKey
	pins       []*pin // one per origin, without configured keys
}

// pin is one origin's key as first fetched, once known.
type pin struct {
	origin, file string
	key          ed25519.PublicKey
	retryAt      time.Time
}

// newTrust uses keys if any, or else the keys pinned in cacheDir for the
// origins, those there are.
func newTrust(keys []ed25519.PublicKey, origins []string, cacheDir string, client *http.Client, log *slog.Logger) (*trust, error) {
	t := &trust{client: client, log: log}
	if len(keys) > 0 {
		t.configured = keys
		return t, nil
	}
	for i, o := range origins {
		p := &pin{origin: o, file: filepath.Join(cacheDir, pinFileName)}
		if i > 0 {
			p.file += "-" + strconv.Itoa(i+1)
		}
		b, err := os.ReadFile(p.file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("pinned origin key: %w", err)
		default:
			if p.key, err = fileinfo.ParseKey(string(b)); err != nil {
				return nil, fmt.Errorf("pinned origin key %s: %w", p.file, err)
			}
		}
		t.pins = append(t.pins, p)
	}
	return t, nil
}

// verify checks fi's signature; errors wrap errUntrusted. Info no key
// known so far verifies has the origins whose key is not pinned yet asked
// for it first.
func (t *trust) verify(ctx context.Context, fi *fileinfo.Info) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	err := fi.Verify(t.keysLocked())
	if errors.Is(err, fileinfo.ErrBadSignature) && t.configured == nil {
		if ferr := t.pinLocked(ctx); ferr != nil {
			err = ferr
		} else {
			err = fi.Verify(t.keysLocked())
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errUntrusted, err)
	}
	return nil
}

// keysLocked are the keys known now.
func (t *trust) keysLocked() []ed25519.PublicKey {
	if t.configured != nil {
		return t.configured
	}
	var keys []ed25519.PublicKey
	for _, p := range t.pins {
		if p.key != nil {
			keys = append(keys, p.key)
		}
	}
	return keys
}

// state is what /v1/status shows: the keys and where they came from.
func (t *trust) state() (keys []string, source string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.keysLocked() {
		keys = append(keys, fileinfo.EncodeKey(k))
	}
	switch {
	case t.configured != nil:
		return keys, keysConfigured
	case len(keys) > 0:
		return keys, keysPinned
	}
	return keys, keysNone
}

// pinLocked fetches and pins the key of every origin that has none yet
// and was not asked moments ago. The error is that of a fetch when no key
// is known at all.
func (t *trust) pinLocked(ctx context.Context) error {
	var errs []error
	for _, p := range t.pins {
		if p.key != nil {
			continue
		}
		if time.Now().Before(p.retryAt) {
			errs = append(errs, fmt.Errorf("no key of %s yet (fetching it failed moments ago)", p.origin))
			continue
		}
		k, err := t.fetch(ctx, p.origin)
		if err == nil {
			err = pinKey(p.file, k)
		}
		if err != nil {
			p.retryAt = time.Now().Add(keyRetry)
			errs = append(errs, fmt.Errorf("no key of %s: %w", p.origin, err))
			continue
		}
		p.key = k
		t.log.Warn("pinned the origin's key on first use; file info must be signed with it (or another origin's pinned key) from now on",
			"origin", p.origin, "key", fileinfo.EncodeKey(k), "file", p.file)
	}
	if len(t.keysLocked()) == 0 {
		return errors.Join(errs...)
	}
	return nil
}

// fetch is GET {origin}/v1/key.
func (t *trust) fetch(ctx context.Context, origin string) (ed25519.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, origin+"/v1/key", nil)
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

// pinKey writes k to file, whole or not at all.
func pinKey(file string, k ed25519.PublicKey) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(fileinfo.EncodeKey(k)+"\n"), 0o600); err != nil {
		return fmt.Errorf("pin origin key: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pin origin key: %w", err)
	}
	return nil
}
