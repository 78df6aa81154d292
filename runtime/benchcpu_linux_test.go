package runtime_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// processCPU returns the CPU time all threads of process pid have used so
// far (the first field of /proc/PID/task/*/schedstat, in nanoseconds), for
// benchmarks that report CPU per message of this process and of a worker.
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
