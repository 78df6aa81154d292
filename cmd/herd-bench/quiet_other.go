//go:build !linux

package main

import "time"

// machineBusy cannot read the machine's load here.
func machineBusy(d time.Duration) (float64, bool) { return 0, false }

// cpuSnap is empty where CPU times cannot be read.
type cpuSnap struct{}

func takeCPU() cpuSnap { return cpuSnap{} }

// otherLoad cannot tell here.
func otherLoad(a, b cpuSnap) (float64, bool) { return 0, false }
