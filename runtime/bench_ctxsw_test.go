//go:build unix

package runtime_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// benchWorkerEnv is the environment a benchmark's worker gets on top of the
// primary's: HERD_BENCH_WORKER_ENV, comma-separated KEY=VALUE pairs, so
// that one side alone can run with another GOMAXPROCS
// (HERD_BENCH_WORKER_ENV=GOMAXPROCS=1).
func benchWorkerEnv() []string {
	v := os.Getenv("HERD_BENCH_WORKER_ENV")
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// ctxSwitches returns the context switches (voluntary and not) of every
// thread of process pid so far, from /proc/PID/task/*/status (Linux), and
// whether they could be read.
func ctxSwitches(pid int) (uint64, bool) {
	return sumTasks(pid, "status", func(b []byte) (uint64, bool) {
		var n uint64
		for line := range bytes.Lines(b) {
			if !bytes.HasPrefix(line, []byte("voluntary_ctxt_switches:")) && !bytes.HasPrefix(line, []byte("nonvoluntary_ctxt_switches:")) {
				continue
			}
			_, v, _ := bytes.Cut(line, []byte(":"))
			if c, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64); err == nil {
				n += c
			}
		}
		return n, true
	})
}

// sumTasks sums what parse reads from /proc/PID/task/*/FILE over every
// thread of process pid (Linux); false when none could be read or parse
// refused one. A thread that exits meanwhile is skipped.
func sumTasks(pid int, file string, parse func([]byte) (uint64, bool)) (uint64, bool) {
	paths, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", file))
	if err != nil || len(paths) == 0 {
		return 0, false
	}
	var total uint64
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		n, ok := parse(b)
		if !ok {
			return 0, false
		}
		total += n
	}
	return total, true
}
