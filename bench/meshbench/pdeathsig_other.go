//go:build !linux

package main

import "os/exec"

// setParentDeathSignal does nothing outside Linux (where meshbench cannot
// read a server's CPU time from /proc anyway).
func setParentDeathSignal(*exec.Cmd) {}
