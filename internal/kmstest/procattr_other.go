//go:build !linux

package kmstest

import "syscall"

// procAttr is nil where the kernel cannot stop the server with the test
// process: Close stops it.
func procAttr() *syscall.SysProcAttr { return nil }
