package kmstest

import "syscall"

// procAttr makes the kernel stop the server when the test process dies
// (a test binary killed at its timeout runs no cleanup), so no server
// outlives its tests.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
