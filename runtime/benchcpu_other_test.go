//go:build unix && !linux

package runtime_test

import "time"

// processCPU cannot read a process's CPU time here (no /proc).
func processCPU(pid int) (time.Duration, bool) { return 0, false }
