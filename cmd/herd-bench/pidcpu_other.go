//go:build !linux

package main

import "time"

// processCPU cannot read another process's CPU time here (no /proc).
func processCPU(pid int) (time.Duration, bool) { return 0, false }
