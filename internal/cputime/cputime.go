//go:build unix

// Package cputime reads the CPU time this process has used, so that a
// benchmark can report the work it did (cpu-ns/op) beside its wall time,
// which depends on how many cores it ran on.
package cputime

import (
	"syscall"
	"time"
)

// Self is the user and system CPU time this process has used so far, or
// 0 where the system cannot tell.
func Self() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
