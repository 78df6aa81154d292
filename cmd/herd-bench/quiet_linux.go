//go:build linux

package main

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// machineBusy returns the fraction of all CPUs' time spent busy over d,
// from the first line of /proc/stat.
func machineBusy(d time.Duration) (float64, bool) {
	a := takeCPU()
	time.Sleep(d)
	b := takeCPU()
	if !a.ok || !b.ok || b.total <= a.total {
		return 0, false
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total), true
}

// cpuSnap is the CPU time of the whole machine, and of this process with
// its reaped descendants, in clock ticks.
type cpuSnap struct {
	busy  uint64 // all CPUs, not idle: user, nice, system, irq, softirq, steal
	tasks uint64 // all CPUs, in processes: user, nice, system
	total uint64 // all CPUs
	own   uint64 // utime+stime+cutime+cstime of this process
	ok    bool
}

// takeCPU reads the machine's and this process's CPU times. A child's
// time joins its parent's cutime and cstime when the parent reaps it, so
// once a run's processes are reaped (workers by their primary, primaries
// by the harness) all of their time is in own.
func takeCPU() cpuSnap {
	var s cpuSnap
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 6 || string(f[0]) != "cpu" {
		return s
	}
	var idle uint64
	for i, v := range f[1:] {
		if i >= 8 { // guest and guest_nice are already in user and nice
			break
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return s
		}
		s.total += n
		switch i {
		case 0, 1, 2: // user, nice, system
			s.tasks += n
		case 3, 4: // idle, iowait
			idle += n
		}
	}
	s.busy = s.total - idle
	b, err = os.ReadFile("/proc/self/stat")
	if err != nil {
		return s
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is the first; utime, stime, cutime, cstime are the
	// 12th to 15th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s
	}
	g := bytes.Fields(b[i+1:])
	if len(g) < 15 {
		return s
	}
	for _, v := range g[11:15] {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return s
		}
		s.own += uint64(max(n, 0))
	}
	s.ok = true
	return s
}

// otherLoad returns the fraction of all CPUs' time that other processes
// (not this one, nor anything it started and reaped) used between a and b.
// Interrupt and softirq time is left out: loopback traffic is processed
// there, charged to no process, and during a run most of it is the run's
// own.
// Runs shorter than minTicks of all CPUs' time are not judged: at a tick
// of 10 ms, one stray tick would be most of them.
func otherLoad(a, b cpuSnap) (float64, bool) {
	const minTicks = 100
	if !a.ok || !b.ok || b.total < a.total+minTicks {
		return 0, false
	}
	other := float64(b.tasks-a.tasks) - float64(b.own-a.own)
	return max(other, 0) / float64(b.total-a.total), true
}
