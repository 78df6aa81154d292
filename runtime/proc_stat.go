package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"time"
)

// This file is the runtime's one reader of a process's /proc/PID/stat
// (proc(5)), which only Linux has: the reaper and the admin socket read a
// process's parent, the pool watchdog its state, a pool's RSS limit
// (WithRecycleRSS) its resident memory, and Pool.Status its resident
// memory and CPU time.

// procStat is what the runtime reads of a process in /proc/PID/stat.
type procStat struct {
	state byte          // field 3: 'R', 'S', 'D', 'T', 't', 'Z', ...
	ppid  int           // field 4
	cpu   time.Duration // fields 14 and 15: utime + stime
	rss   uint64        // field 24, in bytes
}

// errProcStat is wrapped by parseProcStat's errors.
var errProcStat = errors.New("herd: malformed /proc/PID/stat")

// procStatNote is empty where /proc/PID/stat can be read, and says why
// Pool.Status has no RSS or CPU time elsewhere.
var procStatNote = func() string {
	if goruntime.GOOS == "linux" {
		return ""
	}
	return "RSS and CPU time are read from /proc/PID/stat, which " + goruntime.GOOS + " does not have: shown as 0"
}()

// readProcStat reads /proc/PID/stat of process pid.
func readProcStat(pid int) (procStat, error) {
	if procStatNote != "" {
		return procStat{}, errors.New("herd: " + procStatNote)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(b, os.Getpagesize())
}

// parseProcStat decodes the contents of /proc/PID/stat: "PID (COMM) S PPID
// ...". The command name in parentheses may hold spaces and parentheses,
// so the fields are counted after the last ')'. utime and stime are in
// clock ticks of userHZ; rss is in pages of pageSize bytes.
func parseProcStat(b []byte, pageSize int) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("%w: no ')' after the command name", errProcStat)
	}
	// Field 3 (state) is the first after ") ".
	fields := bytes.Fields(b[i+1:])
	const first = 3
	const state, ppid, utime, stime, rss = 3, 4, 14, 15, 24
	if len(fields) < rss-first+1 {
		return procStat{}, fmt.Errorf("%w: %d fields after the command name, want at least %d", errProcStat, len(fields), rss-first+1)
	}
	if len(fields[state-first]) != 1 {
		return procStat{}, fmt.Errorf("%w: state %q", errProcStat, fields[state-first])
	}
	parent, err := strconv.Atoi(string(fields[ppid-first]))
	if err != nil {
		return procStat{}, fmt.Errorf("%w: field %d %q: %w", errProcStat, ppid, fields[ppid-first], err)
	}
	num := func(field int) (uint64, error) {
		s := string(fields[field-first])
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			// rss can be negative in theory (a signed long); treat as 0.
			if n, err2 := strconv.ParseInt(s, 10, 64); err2 == nil && n < 0 {
				return 0, nil
			}
			return 0, fmt.Errorf("%w: field %d %q: %w", errProcStat, field, s, err)
		}
		return v, nil
	}
	u, err := num(utime)
	if err != nil {
		return procStat{}, err
	}
	st, err := num(stime)
	if err != nil {
		return procStat{}, err
	}
	pages, err := num(rss)
	if err != nil {
		return procStat{}, err
	}
	const maxTicks = uint64(1<<63-1) / uint64(time.Second/userHZ)
	ticks := u + st
	if ticks < u || ticks > maxTicks {
		return procStat{}, fmt.Errorf("%w: CPU ticks %d+%d overflow", errProcStat, u, st)
	}
	if pageSize > 0 && pages > (1<<64-1)/uint64(pageSize) {
		return procStat{}, fmt.Errorf("%w: rss %d pages overflows", errProcStat, pages)
	}
	return procStat{
		state: fields[state-first][0],
		ppid:  parent,
		cpu:   time.Duration(ticks) * (time.Second / userHZ),
		rss:   pages * uint64(pageSize),
	}, nil
}

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, which Linux
// fixes at 100 for user space whatever the kernel's own HZ.
const userHZ = 100

// errNoRSS is returned for a process that has exited (a zombie), which
// has no resident memory to sample.
var errNoRSS = errors.New("herd: the process has exited: no resident memory")

// processRSS returns the resident set size of process pid in bytes.
func processRSS(pid int) (uint64, error) {
	st, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	if st.state == 'Z' || st.state == 'X' {
		return 0, errNoRSS
	}
	return st.rss, nil
}

// processState returns the state letter and name of process pid ("S
// (sleeping)", "T (stopped)", "R (running)"), or "" when it cannot be read.
func processState(pid int) string {
	st, err := readProcStat(pid)
	if err != nil {
		return ""
	}
	names := map[byte]string{'R': "running", 'S': "sleeping", 'D': "disk sleep", 'T': "stopped", 't': "tracing stop", 'Z': "zombie", 'X': "dead", 'I': "idle"}
	if n, ok := names[st.state]; ok {
		return fmt.Sprintf("%c (%s)", st.state, n)
	}
	return string(st.state)
}

// isStopped reports whether a state from processState is a stop (SIGSTOP,
// or a tracer's).
func isStopped(state string) bool { return state != "" && (state[0] == 'T' || state[0] == 't') }
