//go:build !unix

package runtime

import (
	"os"
	"time"
)

// processUsage is unix-only.
func processUsage(ps *os.ProcessState) (cpu time.Duration, maxRSS uint64, ok bool) {
	if ps == nil {
		return 0, 0, false
	}
	return ps.UserTime() + ps.SystemTime(), 0, true
}
