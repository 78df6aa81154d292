//go:build unix

package runtime

import (
	"os"
	goruntime "runtime"
	"syscall"
	"time"
)

// processUsage returns a finished process's CPU time (user and system) and
// peak resident set size in bytes, from its rusage.
func processUsage(ps *os.ProcessState) (cpu time.Duration, maxRSS uint64, ok bool) {
	if ps == nil {
		return 0, 0, false
	}
	ru, isRU := ps.SysUsage().(*syscall.Rusage)
	if !isRU || ru == nil {
		return 0, 0, false
	}
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	maxRSS = uint64(ru.Maxrss)
	if goruntime.GOOS != "darwin" && goruntime.GOOS != "ios" {
		maxRSS *= 1024 // kilobytes everywhere but on Apple's systems, where it is bytes
	}
	return cpu, maxRSS, true
}
