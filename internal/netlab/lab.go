package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Lab is a built network. Close deletes it.
type Lab struct {
	cfg     Config
	Server  Node
	Clients []Node

	mu    sync.Mutex
	procs []*Proc
	// neighOld holds the thresholds New replaced, restored by Close.
	neighOld *[3]int
}

const (
	netnsDir   = "/run/netns"
	neighDir   = "/proc/sys/net/ipv4/neigh/default"
	cmdTimeout = 30 * time.Second
)

// Available says why this machine cannot build a lab, or nil if it can.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netlab needs root (network namespaces, veth, tc)")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("netlab needs %s (iproute2): %w", tool, err)
		}
	}
	return nil
}

// New deletes what a previous lab with the same prefix left behind, then
// builds this one. If building fails, what was built is deleted again.
func New(ctx context.Context, cfg Config) (*Lab, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	if err := Cleanup(ctx, cfg.Prefix); err != nil {
		return nil, fmt.Errorf("netlab: leftovers of a previous run: %w", err)
	}
	nodes := cfg.nodes()
	l := &Lab{cfg: cfg, Server: nodes[0], Clients: nodes[1:]}
	fail := func(err error) (*Lab, error) {
		return nil, errors.Join(err, l.Close())
	}
	if err := l.raiseNeighThresholds(len(nodes)); err != nil {
		return fail(err)
	}
	for _, argv := range cfg.setupCommands() {
		if err := run(ctx, argv...); err != nil {
			return fail(err)
		}
	}
	return l, nil
}

// Close ends the processes the lab started, deletes its namespaces and
// bridge, and restores the neighbour thresholds. It may be called more
// than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			if err := p.Stop(5 * time.Second); err != nil {
				errs = appendLocked(&l.mu, errs, err)
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Cleanup(ctx, l.cfg.Prefix); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func appendLocked(mu *sync.Mutex, errs []error, err error) []error {
	mu.Lock()
	defer mu.Unlock()
	return append(errs, err)
}

// Cleanup deletes every namespace and link named like a lab with this
// prefix, and puts back neighbour thresholds a crashed run left raised.
func Cleanup(ctx context.Context, prefix string) error {
	var errs []error
	nss, err := readNames(netnsDir)
	if err != nil {
		errs = append(errs, err)
	}
	// Deleting a namespace deletes its veth, and with it the peer on the
	// bridge.
	for _, ns := range owned(prefix, nss) {
		if err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	links, err := readNames("/sys/class/net")
	if err != nil {
		errs = append(errs, err)
	}
	for _, link := range owned(prefix, links) {
		// A veth whose namespace was just deleted may still be listed
		// while the kernel removes it.
		if err := run(ctx, "ip", "link", "del", link); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	if err := restoreNeighThresholds(prefix); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// readNames lists a directory's entries; a missing directory has none.
func readNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// run runs one ip or tc command, with its output in the error.
func run(ctx context.Context, argv ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netlab: %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// neighSaved is where the thresholds before a run are kept while it runs,
// so that the next run with the prefix restores them after a crash.
func neighSaved(prefix string) string {
	return filepath.Join(os.TempDir(), "netlab-"+prefix+".neigh")
}

func readNeigh() ([3]int, error) {
	var v [3]int
	for i := range v {
		b, err := os.ReadFile(filepath.Join(neighDir, "gc_thresh"+strconv.Itoa(i+1)))
		if err != nil {
			return v, fmt.Errorf("netlab: %w", err)
		}
		if v[i], err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return v, fmt.Errorf("netlab: gc_thresh%d: %w", i+1, err)
		}
	}
	return v, nil
}

// writeNeigh writes thresholds from the highest down when they rise and
// from the lowest up when they fall, so that thresh1 <= thresh2 <= thresh3
// holds at every step.
func writeNeigh(v [3]int) error {
	old, err := readNeigh()
	if err != nil {
		return err
	}
	order := []int{0, 1, 2}
	if v[2] > old[2] {
		slices.Reverse(order)
	}
	for _, i := range order {
		p := filepath.Join(neighDir, "gc_thresh"+strconv.Itoa(i+1))
		if err := os.WriteFile(p, []byte(strconv.Itoa(v[i])), 0o644); err != nil {
			return fmt.Errorf("netlab: %w", err)
		}
	}
	return nil
}

func (l *Lab) raiseNeighThresholds(nodes int) error {
	old, err := readNeigh()
	if err != nil {
		return err
	}
	next := neighThresholds(nodes, old)
	if next == old {
		return nil
	}
	saved := fmt.Sprintf("%d %d %d\n", old[0], old[1], old[2])
	if err := os.WriteFile(neighSaved(l.cfg.Prefix), []byte(saved), 0o600); err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	return writeNeigh(next)
}

// restoreNeighThresholds puts back the thresholds saved by the run with
// this prefix, if any.
func restoreNeighThresholds(prefix string) error {
	b, err := os.ReadFile(neighSaved(prefix))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	var v [3]int
	if _, err := fmt.Sscan(string(b), &v[0], &v[1], &v[2]); err != nil {
		return fmt.Errorf("netlab: %s: %w", neighSaved(prefix), err)
	}
	if err := writeNeigh(v); err != nil {
		return err
	}
	return os.Remove(neighSaved(prefix))
}

// Counters are a node's veth counters read on the bridge side, in bytes
// including headers: what the node received and what it sent.
type Counters struct {
	Received, Sent int64
}

// Counters reads n's link counters in the root namespace (the bridge-side
// veth's tx is the node's rx).
func (l *Lab) Counters(n Node) (Counters, error) {
	read := func(name string) (int64, error) {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", n.Name, "statistics", name))
		if err != nil {
			return 0, fmt.Errorf("netlab: %w", err)
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	var c Counters
	var err error
	if c.Received, err = read("tx_bytes"); err != nil {
		return c, err
	}
	c.Sent, err = read("rx_bytes")
	return c, err
}
