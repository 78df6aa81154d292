package runtime_test

import (
	"os"
	"strings"
	"testing"

	"github.com/herd-go/herd/runtime"
)

// TestProcessRSS: this process's resident memory and state, read from
// its /proc/PID/stat (proc_stat.go, whose parser TestParseProcStat checks).
func TestProcessRSS(t *testing.T) {
	rss, err := runtime.ProcessRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("this process's RSS: %d, %v", rss, err)
	}
	if st := runtime.ProcessState(os.Getpid()); !strings.HasPrefix(st, "R (running)") && !strings.HasPrefix(st, "S (sleeping)") {
		t.Errorf("this process's state %q", st)
	}
}

// TestOOMCounters: the OOM-kill counter lines of memory.events,
// memory.oom_control and /proc/vmstat, and which file covers a process.
func TestOOMCounters(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n", 2, true},
		{"oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", 7, true},
		{"nr_free_pages 1\noom_kill 0\n", 0, true},
		{"oom_kill_disable 1\n", 0, false},
		{"oom_kill x\n", 0, false},
	} {
		got, ok := runtime.ParseCounter([]byte(tc.in), "oom_kill")
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseCounter(%q) = %d, %t; want %d, %t", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct{ in, file string }{
		{"4:memory:/a/b\n0::/x\n", "/sys/fs/cgroup/memory/a/b/memory.oom_control"},
		{"4:cpu,memory:/\n", "/sys/fs/cgroup/memory/memory.oom_control"},
		{"4:memory:/../../etc\n", "/sys/fs/cgroup/memory/etc/memory.oom_control"},
		{"0::/\n", ""},
		{"garbage", ""},
	} {
		if file, _ := runtime.OOMFileFromCgroup([]byte(tc.in)); file != tc.file {
			t.Errorf("OOMFileFromCgroup(%q) = %q, want %q", tc.in, file, tc.file)
		}
	}
}

// FuzzProcParsers: the readers of /proc and cgroup text never panic, and
// what they accept is consistent.
func FuzzProcParsers(f *testing.F) {
	for _, s := range []string{"VmRSS:\t1 kB\n", "oom_kill 3\n", "4:memory:/a\n0::/b\n", "VmRSS: kB", "\x00:\x00:\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		runtime.ParseCounter(b, "oom_kill")
		if file, key := runtime.OOMFileFromCgroup(b); file != "" && (key != "oom_kill" || !strings.HasPrefix(file, "/sys/fs/cgroup/")) {
			t.Errorf("file %q key %q", file, key)
		}
	})
}
