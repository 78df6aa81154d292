//go:build !linux

package runtime

// cgroupCPUQuota returns 0: cgroups are Linux's.
func cgroupCPUQuota() int { return 0 }
