package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// ctxSwitches returns the context switches (voluntary and not) of every
// thread of process pid so far, from /proc/PID/task/*/status, and whether
// they could be read. A thread that has exited no longer counts, which Go
// programs rarely do (the runtime keeps its threads).
func ctxSwitches(pid int) (uint64, bool) {
	dirs, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "status"))
	if err != nil || len(dirs) == 0 {
		return 0, false
	}
	var total uint64
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		for line := range bytes.Lines(b) {
			if !bytes.HasPrefix(line, []byte("voluntary_ctxt_switches:")) && !bytes.HasPrefix(line, []byte("nonvoluntary_ctxt_switches:")) {
				continue
			}
			_, v, _ := bytes.Cut(line, []byte(":"))
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			if err == nil {
				total += n
			}
		}
	}
	return total, true
}
