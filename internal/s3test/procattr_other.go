//go:build !linux

package s3test

import "syscall"

// procAttr is nil where the kernel cannot stop the server with the test
// process: Close stops it.
func procAttr() *syscall.SysProcAttr { return nil }
