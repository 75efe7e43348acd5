package netlab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cmd is a program to run inside a namespace.
type Cmd struct {
	Args []string
	// Env is added to the lab owner's environment.
	Env            []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Proc is a process the lab started. `ip netns exec` execs the program in
// place, so PID is the program's own.
type Proc struct {
	Name string
	PID  int
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs c inside n. The lab ends it on Close if it still runs; the
// kernel kills it if the lab's owner dies without closing.
func (l *Lab) Start(n Node, c Cmd) (*Proc, error) {
	if len(c.Args) == 0 {
		return nil, errors.New("netlab: start: no program")
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, c.Args...)...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netlab: start %s in %s: %w", c.Args[0], n.Name, err)
	}
	p := &Proc{Name: n.Name + ":" + c.Args[0], PID: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// Done is closed when the process has exited; Err then says how.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done is closed.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop sends SIGTERM, waits up to grace for the process to exit, then
// kills it. It may be called more than once; it returns an error only if
// the process had to be killed.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("netlab: %s (pid %d) did not exit within %s of SIGTERM; killed", p.Name, p.PID, grace)
	}
}

// Usage is a process's CPU time and memory, from /proc.
type Usage struct {
	CPU     time.Duration // user + system
	RSS     int64         // bytes resident now
	PeakRSS int64         // VmHWM: the most resident at any time
}

// Usage reads the process's counters; it fails once the process is gone.
func (p *Proc) Usage() (Usage, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/stat")
	if err != nil {
		return Usage{}, fmt.Errorf("netlab: %s: %w", p.Name, err)
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/status")
	if err != nil {
		return Usage{}, fmt.Errorf("netlab: %s: %w", p.Name, err)
	}
	var u Usage
	if u.CPU, err = parseStatCPU(string(stat)); err != nil {
		return Usage{}, fmt.Errorf("netlab: %s: %w", p.Name, err)
	}
	if u.RSS, u.PeakRSS, err = parseStatusMem(string(status)); err != nil {
		return Usage{}, fmt.Errorf("netlab: %s: %w", p.Name, err)
	}
	return u, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go runs on.
const clockTicks = 100

// parseStatCPU reads utime + stime from /proc/PID/stat. The command name
// (field 2) may hold spaces and parentheses, so fields are counted from
// the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	// After ')': state is field 3, utime 14 and stime 15.
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the name", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseStatusMem reads VmRSS and VmHWM (kB) from /proc/PID/status.
func parseStatusMem(status string) (rss, hwm int64, err error) {
	found := 0
	for line := range strings.SplitSeq(status, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("status: %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("status: %q: %w", line, err)
		}
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("status: no VmRSS or VmHWM")
	}
	return rss, hwm, nil
}
