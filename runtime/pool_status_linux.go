package runtime

import (
	"os"
	"strconv"
)

// procUsageNote is empty: Linux has /proc/PID/stat.
const procUsageNote = ""

// readProcUsage reads the RSS and CPU time of process pid.
func readProcUsage(pid int) (procUsage, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procUsage{}, err
	}
	return parseProcUsage(b, os.Getpagesize())
}
