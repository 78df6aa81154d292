//go:build !unix

package main

// processAlive reports whether pid names a process; PM2 runs on Unix only
// here.
func processAlive(pid int) bool { return false }
