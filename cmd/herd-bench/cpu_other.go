//go:build !unix

package main

import "time"

// selfCPU cannot measure CPU time here.
func selfCPU() (time.Duration, bool) { return 0, false }
