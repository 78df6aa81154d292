//go:build !linux

package main

import "time"

// machineBusy cannot read the machine's load here.
func machineBusy(d time.Duration) (float64, bool) { return 0, false }
