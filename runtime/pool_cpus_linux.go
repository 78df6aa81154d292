package runtime

import (
	"os"
	"path"
	"strings"
)

// cgroupCPUQuota returns the smallest cgroup v2 CPU quota, in whole CPUs,
// of the process's cgroup and its ancestors, or 0 when there is none (no
// cgroup v2, no limit, or files it cannot read).
func cgroupCPUQuota() int {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	var dir string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			dir = path.Clean("/" + rest)
		}
	}
	if dir == "" {
		return 0 // cgroup v1 only
	}
	best := 0
	for {
		if c, err := os.ReadFile(path.Join("/sys/fs/cgroup", dir, "cpu.max")); err == nil {
			if q := parseCPUMax(string(c)); q > 0 && (best == 0 || q < best) {
				best = q
			}
		}
		if dir == "/" {
			return best
		}
		dir = path.Dir(dir)
	}
}
