//go:build !linux

package main

// ctxSwitches cannot count context switches here (no /proc).
func ctxSwitches(pid int) (uint64, bool) { return 0, false }
