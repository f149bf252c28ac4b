//go:build !unix

package main

// umask does nothing where there is no umask; the socket is chmod-ed after.
func umask(m int) int { return m }
