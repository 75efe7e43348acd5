package main

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill the proxy if the benchmark itself is
// killed (SIGKILL runs no defers), so that no proxy outlives it.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
