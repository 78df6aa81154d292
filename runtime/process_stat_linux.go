package runtime

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// processState returns the state letter and name of process pid from
// /proc/PID/stat ("S (sleeping)", "T (stopped)", "R (running)"; procStat,
// reaper_linux.go), or "" when it cannot be read.
func processState(pid int) string {
	_, c, ok := procStat(pid)
	if !ok {
		return ""
	}
	names := map[byte]string{'R': "running", 'S': "sleeping", 'D': "disk sleep", 'T': "stopped", 't': "tracing stop", 'Z': "zombie", 'X': "dead", 'I': "idle"}
	if n, ok := names[c]; ok {
		return fmt.Sprintf("%c (%s)", c, n)
	}
	return string(c)
}

// isStopped reports whether a state from processState is a stop (SIGSTOP,
// or a tracer's).
func isStopped(state string) bool { return state != "" && (state[0] == 'T' || state[0] == 't') }

// errNoRSS is returned for a process whose status has no VmRSS line (a
// zombie).
var errNoRSS = errors.New("no VmRSS in its status")

// processRSS returns the resident set size of process pid in bytes, from
// the VmRSS line of /proc/PID/status.
func processRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// parseVmRSS reads "VmRSS:   1234 kB" from the text of /proc/PID/status.
func parseVmRSS(b []byte) (uint64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("herd: VmRSS line %q: not \"N kB\"", line)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil || n > 1<<50 {
			return 0, fmt.Errorf("herd: VmRSS line %q: bad number", line)
		}
		return n * 1024, nil
	}
	return 0, errNoRSS
}
