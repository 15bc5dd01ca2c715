package main

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel send cmd's process SIGTERM when
// the driver dies, so that no `shop serve` outlives a killed run (this
// binary's own servers stop when their stdin closes).
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
