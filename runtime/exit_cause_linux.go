package runtime

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is where the cgroup file systems are mounted (a variable for
// tests).
var cgroupRoot = "/sys/fs/cgroup"

// oomCounterFile returns the file and key of the OOM-kill counter that
// covers pid: its cgroup v1 memory controller's memory.oom_control, its
// cgroup v2 group's memory.events, or the kernel's /proc/vmstat when it is
// in neither (the root group has no memory.events).
func oomCounterFile(pid int) (file, key string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err == nil {
		if f, k := oomFileFromCgroup(b); f != "" {
			if _, err := os.Stat(f); err == nil {
				return f, k
			}
		}
	}
	return "/proc/vmstat", "oom_kill"
}

// oomFileFromCgroup picks the counter file from the text of
// /proc/PID/cgroup: the v1 memory hierarchy when there is one (the memory
// controller is then not on v2), else the v2 group ("0::/path").
func oomFileFromCgroup(b []byte) (file, key string) {
	var v2 string
	for line := range strings.SplitSeq(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			if c == "memory" {
				return filepath.Join(cgroupRoot, "memory", filepath.Clean("/"+parts[2]), "memory.oom_control"), "oom_kill"
			}
		}
	}
	if v2 == "" || filepath.Clean("/"+v2) == "/" {
		return "", ""
	}
	// A unified hierarchy at the root, or a hybrid one's at unified/.
	for _, root := range []string{cgroupRoot, filepath.Join(cgroupRoot, "unified")} {
		if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
			return filepath.Join(root, filepath.Clean("/"+v2), "memory.events"), "oom_kill"
		}
	}
	return "", ""
}

// readOOMCounter reads "key N" from file.
func readOOMCounter(file, key string) (uint64, bool) {
	if file == "" {
		return 0, false
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	return parseCounter(b, key)
}

// parseCounter finds the line "key N" in b (the format of memory.events,
// memory.oom_control and /proc/vmstat).
func parseCounter(b []byte, key string) (uint64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || name != key {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
		return n, err == nil
	}
	return 0, false
}
