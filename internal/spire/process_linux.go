package spire

import "syscall"

// sysProcAttr makes the kernel stop a child when this process dies, so that
// a crashed `shop up --spire` leaves no SPIRE or service behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
