//go:build !linux

package spire

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
