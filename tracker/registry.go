package tracker

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

var (
	filesBucket    = []byte("files")
	passkeysBucket = []byte("passkeys") // credID → Credential (JSON)
)

// registry persists file path → fileinfo.Info (as JSON) in a bbolt file.
// It knows nothing of swarms: the Server keeps the two in step.
type registry struct {
	db *bolt.DB
}

// openRegistry opens (creating if needed) dataDir/registry.db.
func openRegistry(dataDir string) (*registry, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	p := filepath.Join(dataDir, "registry.db")
	// The timeout turns a second tracker on the same data dir into an
	// error instead of a hang on the file lock.
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", p, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(filesBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(passkeysBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init registry %s: %w", p, err)
	}
	return &registry{db: db}, nil
}

// put stores fi under fi.Path and returns the record it replaced, if any.
func (r *registry) put(fi *fileinfo.Info) (old *fileinfo.Info, err error) {
	b, err := json.Marshal(fi)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", fi.Path, err)
	}
	err = r.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(filesBucket)
		if prev := bk.Get([]byte(fi.Path)); prev != nil {
			old = new(fileinfo.Info)
			if err := json.Unmarshal(prev, old); err != nil {
				return fmt.Errorf("decode stored %s: %w", fi.Path, err)
			}
		}
		return bk.Put([]byte(fi.Path), b)
	})
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", fi.Path, err)
	}
	return old, nil
}

// get returns the record of path p, or errNotFound.
func (r *registry) get(p string) (*fileinfo.Info, error) {
	var fi *fileinfo.Info
	err := r.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(filesBucket).Get([]byte(p))
		if v == nil {
			return errNotFound
		}
		fi = new(fileinfo.Info)
		return json.Unmarshal(v, fi)
	})
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", p, err)
	}
	return fi, nil
}

// each calls fn with every record in path order, stopping at fn's first
// error.
func (r *registry) each(fn func(*fileinfo.Info) error) error {
	return r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(filesBucket).ForEach(func(k, v []byte) error {
			fi := new(fileinfo.Info)
			if err := json.Unmarshal(v, fi); err != nil {
				return fmt.Errorf("decode stored %s: %w", k, err)
			}
			return fn(fi)
		})
	})
}

// count returns how many records there are.
func (r *registry) count() (int, error) {
	var n int
	err := r.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(filesBucket).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count files: %w", err)
	}
	return n, nil
}

// putPasskey stores c.
func (r *registry) putPasskey(c Credential) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode passkey %s: %w", c.Name, err)
	}
	err = r.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(passkeysBucket).Put(c.ID[:], b) })
	if err != nil {
		return fmt.Errorf("store passkey %s: %w", c.Name, err)
	}
	return nil
}

// passkeys returns every stored credential.
func (r *registry) passkeys() ([]Credential, error) {
	var out []Credential
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(passkeysBucket).ForEach(func(k, v []byte) error {
			var c Credential
			if err := json.Unmarshal(v, &c); err != nil || len(k) != len(c.ID) {
				return fmt.Errorf("decode stored passkey %x: %v", k, err)
			}
			c.ID = credID(k)
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// passkey returns the stored credential id, ok false when there is none.
func (r *registry) passkey(id credID) (c Credential, ok bool, err error) {
	err = r.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(passkeysBucket).Get(id[:])
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &c)
	})
	if err != nil {
		return Credential{}, false, fmt.Errorf("look up passkey: %w", err)
	}
	c.ID = id
	return c, ok, nil
}

// deletePasskeys removes the credentials ids.
func (r *registry) deletePasskeys(ids []credID) error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		for _, id := range ids {
			if err := tx.Bucket(passkeysBucket).Delete(id[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete passkeys: %w", err)
	}
	return nil
}

// close closes the bbolt file.
func (r *registry) close() error {
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("close registry: %w", err)
	}
	return nil
}
