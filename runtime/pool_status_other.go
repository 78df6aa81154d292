//go:build !linux

package runtime

import (
	"errors"
	goruntime "runtime"
)

// procUsageNote says why Status has no RSS or CPU time here.
const procUsageNote = "RSS and CPU time are read from /proc/PID/stat, which " + goruntime.GOOS + " does not have: shown as 0"

// readProcUsage has nothing to read here.
func readProcUsage(int) (procUsage, error) {
	return procUsage{}, errors.New("herd: " + procUsageNote)
}
