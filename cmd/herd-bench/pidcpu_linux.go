package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// processCPU returns the CPU time every thread of process pid has used so
// far, the sum of the first field of /proc/PID/task/*/schedstat
// (nanoseconds on the CPU), and whether it could be read. It measures a
// child while it runs, at nanosecond precision, where getrusage would wait
// for the child to be reaped and /proc/PID/stat counts in 10 ms ticks. A
// thread that has exited no longer counts, which Go programs rarely do
// (the runtime keeps its threads).
func processCPU(pid int) (time.Duration, bool) {
	paths, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "schedstat"))
	if err != nil || len(paths) == 0 {
		return 0, false
	}
	var total uint64
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		f, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte(" "))
		n, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, false
		}
		total += n
	}
	return time.Duration(total), true
}
