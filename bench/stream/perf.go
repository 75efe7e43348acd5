package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// perfRecord samples a running process with `perf record` (call graphs by
// frame pointer, which Go keeps on amd64 and arm64) into dir/name.data
// until the returned stop is called. The proxies are child processes, so
// perf is how the benchmark sees where their CPU goes, the kernel's share
// included (`perf report -i FILE --no-children`).
func (b *bench) perfRecord(ctx context.Context, pid int, dir, name string) (stop func() error, err error) {
	bin, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("-perf: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("-perf: %w", err)
	}
	out := filepath.Join(dir, name+".data")
	cmd := exec.CommandContext(ctx, bin, "record", "--quiet", "-g", "-F", "999", "-p", strconv.Itoa(pid), "-o", out)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stderr = &prefixWriter{w: b.stderr, prefix: "[perf " + name + "] "}
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("-perf: start perf: %w", err)
	}
	// perf needs a moment to attach; samples before that are lost.
	if err := sleep(ctx, 200*time.Millisecond); err != nil {
		return nil, err
	}
	// stop may be called more than once (deferred, and once on success).
	return sync.OnceValue(func() error {
		// perf writes its file on SIGINT.
		_ = cmd.Process.Signal(syscall.SIGINT)
		// perf re-raises SIGINT once it has written the file.
		var ee *exec.ExitError
		if err := cmd.Wait(); err != nil && !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGINT) {
			return fmt.Errorf("perf record of %s: %w", name, err)
		}
		b.progress("perf: %s", out)
		return nil
	}), nil
}
