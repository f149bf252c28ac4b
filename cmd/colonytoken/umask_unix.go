//go:build unix

package main

import "syscall"

// umask sets the process's file mode mask and returns the old one, so that
// a Unix socket is never created wider than 0600, not even for a moment.
func umask(m int) int { return syscall.Umask(m) }
