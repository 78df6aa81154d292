package runtime

import (
	goruntime "runtime"
	"strconv"
	"strings"
)

// DefaultPoolSize returns the number of CPUs the process may use: GOMAXPROCS
// (which Go already lowers to a cgroup CPU limit unless the GOMAXPROCS
// variable is set), and never more than the cgroup v2 CPU quota (cpu.max of
// the process's cgroup and its ancestors, rounded up), at least 1.
func DefaultPoolSize() int {
	n := goruntime.GOMAXPROCS(0)
	if q := cgroupCPUQuota(); q > 0 && q < n {
		n = q
	}
	return max(n, 1)
}

// parseCPUMax reads a cgroup v2 cpu.max file ("max 100000" or
// "150000 100000") and returns the quota in whole CPUs, rounded up, or 0
// when there is none or the content is not understood.
func parseCPUMax(s string) int {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 || f[0] == "max" {
		return 0
	}
	quota, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || quota <= 0 {
		return 0
	}
	period := int64(100000)
	if len(f) == 2 {
		if period, err = strconv.ParseInt(f[1], 10, 64); err != nil || period <= 0 {
			return 0
		}
	}
	cpus := (quota + period - 1) / period
	if cpus > 1<<20 {
		return 0
	}
	return int(cpus)
}
