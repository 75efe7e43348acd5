package tracker

import (
	"context"
	"errors"
	"fmt"
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
func openBoltStore(dataDir string, ttl time.Duration, limit int) (*boltStore, error) {
	reg, err := openRegistry(dataDir)
	if err != nil {
		return nil, err
	}
	s := &boltStore{reg: reg, swarms: newSwarms(ttl, limit)}
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
	res, ok := s.swarms.announce(a, time.Now())
	return res, ok, nil
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
