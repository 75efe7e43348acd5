package tracker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// boltStore is the embedded store, for one tracker process: the registry
// in a bbolt file (it survives restarts) and the swarms in memory (the
// next round of announces rebuilds them).
type boltStore struct {
	// mu orders registrations, so that the registry and the swarms'
	// reference counts change together.
	mu     sync.Mutex
	reg    *registry
	swarms *swarms
	closed bool
}

var _ Store = (*boltStore)(nil)

// openBoltStore opens dataDir/registry.db and gives every registered
// infohash its swarm.
func openBoltStore(dataDir string, lim swarmLimits) (*boltStore, error) {
	reg, err := openRegistry(dataDir)
	if err != nil {
		return nil, err
	}
	s := &boltStore{reg: reg, swarms: newSwarms(lim.ttl, lim.perSwarm, lim.perAddr)}
	creds, err := reg.passkeys()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("load passkeys: %w", err), reg.close())
	}
	for _, c := range creds {
		s.swarms.allow(c.ID)
	}
	err = reg.each(func(fi *fileinfo.Info) error {
		h, err := parseHash(fi.InfoHash)
		if err != nil {
			return fmt.Errorf("stored %s: %w", fi.Path, err)
		}
		s.swarms.retain(h)
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("load registry: %w", err), reg.close())
	}
	return s, nil
}

func (s *boltStore) Register(_ context.Context, fi *fileinfo.Info) (*fileinfo.Info, error) {
	h, err := parseHash(fi.InfoHash)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.reg.put(fi)
	if err != nil {
		return nil, err
	}
	// Retain before release: re-registering the same bytes must keep
	// their swarm.
	s.swarms.retain(h)
	if old != nil {
		if oh, err := parseHash(old.InfoHash); err == nil {
			s.swarms.release(oh)
		}
	}
	return old, nil
}

func (s *boltStore) Lookup(_ context.Context, p string) (*fileinfo.Info, error) {
	return s.reg.get(p)
}

func (s *boltStore) Files(context.Context) ([]*fileinfo.Info, error) {
	var out []*fileinfo.Info
	err := s.reg.each(func(fi *fileinfo.Info) error {
		out = append(out, fi)
		return nil
	})
	return out, err
}

func (s *boltStore) Announce(_ context.Context, a *Announce) (announceResult, bool, error) {
	return s.swarms.announce(a, time.Now())
}

func (s *boltStore) AddPasskey(_ context.Context, c Credential) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reg.putPasskey(c); err != nil {
		return err
	}
	s.swarms.allow(c.ID)
	return nil
}

func (s *boltStore) Passkey(_ context.Context, id credID) (Credential, bool, error) {
	return s.reg.passkey(id)
}

func (s *boltStore) Passkeys(context.Context) ([]Credential, error) {
	all, err := s.reg.passkeys()
	slices.SortFunc(all, func(a, b Credential) int { return cmp.Compare(a.Name, b.Name) })
	return all, err
}

func (s *boltStore) Revoke(_ context.Context, name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.reg.passkeys()
	if err != nil {
		return 0, err
	}
	var ids []credID
	for _, c := range all {
		if c.Name == name {
			ids = append(ids, c.ID)
		}
	}
	// Refused and dropped first: a revocation that fails to persist still
	// holds until this process restarts, and the operator sees the error.
	s.swarms.revoke(ids)
	return len(ids), s.reg.deletePasskeys(ids)
}

func (s *boltStore) Peers(_ context.Context, h [20]byte, n int) ([]peer, error) {
	return s.swarms.sample(h, n, time.Now()), nil
}

func (s *boltStore) Scrape(_ context.Context, h [20]byte) (scrapeCounts, bool, error) {
	sc, ok := s.swarms.scrape(h, time.Now())
	return sc, ok, nil
}

func (s *boltStore) Sweep(context.Context) (storeStats, error) {
	peers := s.swarms.sweep(time.Now())
	files, err := s.reg.count()
	return storeStats{files: files, peers: peers}, err
}

func (s *boltStore) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("registry closed")
	}
	return nil
}

func (s *boltStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.reg.close()
}
