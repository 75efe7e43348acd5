package origin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"
)

// Limits of a user's lists.
const (
	// MaxRecent bounds the recently played list; the oldest plays fall off.
	MaxRecent = 100
	// MaxFavorites bounds the favourites, so one user cannot fill the disk.
	MaxFavorites = 1000
	maxGroupLen  = 64
)

// Files below DataDir/users/NAME. The credential is written only by
// AddUser (the CLI, possibly while the origin runs) and the lists only by
// the origin, so no file has two writers.
const (
	usersDir       = "users"
	credentialFile = "credential.json"
	listsFile      = "lists.json"
)

var userNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// errNoUser is returned for a user name with no credential.
var errNoUser = errors.New("no such user")

// ValidUserName reports whether name may name a user: 1 to 64 letters,
// digits, '.', '_' or '-', starting with a letter or digit (so it is also a
// safe directory name).
func ValidUserName(name string) bool { return userNameRE.MatchString(name) }

// credential is what the origin keeps of a user's token: its SHA-256 only.
type credential struct {
	Name        string    `json:"name"`
	TokenSHA256 string    `json:"token_sha256"`
	Created     time.Time `json:"created"`
}

// Favorite is one of a user's favourites. Group is a free label the page
// groups favourites by; "" is no group.
type Favorite struct {
	Path  string    `json:"path"`
	Group string    `json:"group,omitempty"`
	Added time.Time `json:"added"`
}

// Play is one entry of a user's recently played list.
type Play struct {
	Path     string    `json:"path"`
	PlayedAt time.Time `json:"played_at"`
}

// lists is what is persisted of one user, in lists.json.
type lists struct {
	Favorites []Favorite `json:"favorites"`
	// Recent is newest first, at most MaxRecent long, one entry per path.
	Recent []Play `json:"recent"`
}

func (l *lists) clone() *lists {
	return &lists{Favorites: slices.Clone(l.Favorites), Recent: slices.Clone(l.Recent)}
}

// AddUser creates user name below dataDir, or gives an existing user a
// new credential (the old token stops working; the lists stay), and
// returns the new token. Only the token's SHA-256 is stored: the token is
// shown once, to whoever ran this.
func AddUser(dataDir, name string) (string, error) {
	if dataDir == "" {
		return "", errors.New("origin: a data directory is required")
	}
	if !ValidUserName(name) {
		return "", fmt.Errorf("origin: user name %q: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	dir := filepath.Join(dataDir, usersDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("origin: add user %s: %w", name, err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	token := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(token))
	b, err := json.MarshalIndent(credential{Name: name, TokenSHA256: hex.EncodeToString(sum[:]), Created: time.Now().UTC()}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("origin: add user %s: %w", name, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, credentialFile), b, 0o600); err != nil {
		return "", fmt.Errorf("origin: add user %s: %w", name, err)
	}
	return token, nil
}

// userStore holds the users' lists below DataDir/users.
type userStore struct {
	dir string

	// mu serialises every read-modify-write of the lists; the lists are
	// small and written rarely, so one lock is enough.
	mu     sync.Mutex
	loaded map[string]*lists
}

func newUserStore(dataDir string) (*userStore, error) {
	dir := filepath.Join(dataDir, usersDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("origin: data directory: %w", err)
	}
	return &userStore{dir: dir, loaded: map[string]*lists{}}, nil
}

// credentialOf reads name's credential from disk, every time: a user added
// or given a new token while the origin runs takes effect at once.
func (u *userStore) credentialOf(name string) ([]byte, error) {
	if !ValidUserName(name) {
		return nil, errNoUser
	}
	b, err := os.ReadFile(filepath.Join(u.dir, name, credentialFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoUser
	}
	if err != nil {
		return nil, fmt.Errorf("read credential of %s: %w", name, err)
	}
	var c credential
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("credential of %s: %w", name, err)
	}
	sum, err := hex.DecodeString(c.TokenSHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("credential of %s: bad token hash", name)
	}
	return sum, nil
}

// is reports whether token is user name's.
func (u *userStore) is(name, token string) (bool, error) {
	h, err := u.credentialOf(name)
	if errors.Is(err, errNoUser) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(h, sum[:]) == 1, nil
}

// owner returns the user whose token this is, trying want first (the
// common case costs one small read); "" if no user has it.
func (u *userStore) owner(token, want string) (string, error) {
	matches := func(name string) (bool, error) { return u.is(name, token) }
	if ok, err := matches(want); ok || err != nil {
		return want, err
	}
	entries, err := os.ReadDir(u.dir)
	if err != nil {
		return "", fmt.Errorf("list users: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == want {
			continue
		}
		if ok, err := matches(e.Name()); err != nil {
			return "", err
		} else if ok {
			return e.Name(), nil
		}
	}
	return "", nil
}

// get returns a copy of name's lists.
func (u *userStore) get(name string) (*lists, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	l, err := u.loadLocked(name)
	if err != nil {
		return nil, err
	}
	return l.clone(), nil
}

// update applies fn to a copy of name's lists and, if fn succeeds, writes
// the result to disk before it becomes visible; it returns a copy of it.
func (u *userStore) update(name string, fn func(*lists) error) (*lists, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	l, err := u.loadLocked(name)
	if err != nil {
		return nil, err
	}
	next := l.clone()
	if err := fn(next); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode lists of %s: %w", name, err)
	}
	if err := writeFileAtomic(filepath.Join(u.dir, name, listsFile), b, 0o600); err != nil {
		return nil, fmt.Errorf("save lists of %s: %w", name, err)
	}
	u.loaded[name] = next
	return next.clone(), nil
}

func (u *userStore) loadLocked(name string) (*lists, error) {
	if l, ok := u.loaded[name]; ok {
		return l, nil
	}
	l := &lists{}
	b, err := os.ReadFile(filepath.Join(u.dir, name, listsFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read lists of %s: %w", name, err)
	default:
		if err := json.Unmarshal(b, l); err != nil {
			return nil, fmt.Errorf("lists of %s: %w", name, err)
		}
	}
	if l.Favorites == nil {
		l.Favorites = []Favorite{}
	}
	if l.Recent == nil {
		l.Recent = []Play{}
	}
	u.loaded[name] = l
	return l, nil
}

// writeFileAtomic replaces name with data: a crash leaves either the old
// file or the new one, never a torn one.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	// Make the rename itself durable.
	if d, err := os.Open(filepath.Dir(name)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
