package runtime_test

import (
	"bytes"
	"strconv"
	"time"
)

// processCPU returns the CPU time all threads of process pid have used so
// far (the first field of /proc/PID/task/*/schedstat, in nanoseconds), for
// benchmarks that report CPU per message of this process and of a worker.
func processCPU(pid int) (time.Duration, bool) {
	total, ok := sumTasks(pid, "schedstat", func(b []byte) (uint64, bool) {
		f, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte(" "))
		n, err := strconv.ParseUint(string(f), 10, 64)
		return n, err == nil
	})
	return time.Duration(total), ok
}
