// Package leakcheck counts what a process holds (descriptors, goroutines,
// child processes) and checks that a test gave back what it took. It is
// herdtest's leak check, apart so that the runtime's own internal tests
// (which herdtest, importing runtime, cannot serve) use it too.
package leakcheck

import (
	"bytes"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Snapshot is what a process held at one moment.
type Snapshot struct {
	FDs        int
	Goroutines int
	Children   []int
}

// Take records the current counts. Goroutines leaves out the one that herd
// starts with the first Primary and keeps for the life of the process (the
// thread workers are forked from; see the runtime's parent-death notes), so
// that a snapshot taken before the first NewPrimary of a test binary
// compares with one taken after it.
func Take() Snapshot {
	return Snapshot{FDs: countFDs(), Goroutines: goruntime.NumGoroutine() - lifetimeGoroutines(), Children: Children()}
}

// forkerFunc is the function of herd's fork thread, as a goroutine dump
// names it.
const forkerFunc = "github.com/herd-go/herd/runtime.forkLoop("

// forkerSeen is set once the fork thread exists; it never ends.
var forkerSeen atomic.Bool

// lifetimeGoroutines counts the goroutines that, once started, live as long
// as the process: herd's fork thread.
func lifetimeGoroutines() int {
	if forkerSeen.Load() {
		return 1
	}
	buf := make([]byte, 64<<10)
	for {
		n := goruntime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	if bytes.Contains(buf, []byte(forkerFunc)) {
		forkerSeen.Store(true)
		return 1
	}
	return 0
}

// TB is the part of testing.TB that Check uses.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// Check fails t when, within wait, the process does not get back to at most
// the descriptors and goroutines of base, and to no child process that base
// did not have.
func Check(t TB, base Snapshot, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	backoff := time.Millisecond
	for {
		now := Take()
		extra := newChildren(base.Children, now.Children)
		if now.FDs <= base.FDs && now.Goroutines <= base.Goroutines && len(extra) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var msg []string
			if now.FDs > base.FDs {
				msg = append(msg, fmt.Sprintf("open descriptors %d, was %d: %s", now.FDs, base.FDs, fdList()))
			}
			if now.Goroutines > base.Goroutines {
				buf := make([]byte, 1<<20)
				n := goruntime.Stack(buf, true)
				msg = append(msg, fmt.Sprintf("goroutines %d, was %d:\n%s", now.Goroutines, base.Goroutines, buf[:n]))
			}
			if len(extra) > 0 {
				msg = append(msg, fmt.Sprintf("child processes left: %v", extra))
			}
			t.Errorf("leak: %s", strings.Join(msg, "; "))
			return
		}
		time.Sleep(backoff)
		if backoff < 50*time.Millisecond {
			backoff *= 2
		}
	}
}

func newChildren(before, after []int) []int {
	seen := make(map[int]bool, len(before))
	for _, p := range before {
		seen[p] = true
	}
	var extra []int
	for _, p := range after {
		if !seen[p] {
			extra = append(extra, p)
		}
	}
	return extra
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents) - 1 // the directory being read
}

func fdList() string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fmt.Fprintf(&b, "%s->%s ", e.Name(), target)
	}
	return b.String()
}

// Children returns the PIDs of this process's live (not yet reaped or
// zombie) children, read from /proc. It returns nil where /proc is missing.
func Children() []int {
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok && ppid == self {
			kids = append(kids, pid)
		}
	}
	return kids
}

// parentOf reads the parent PID from /proc/PID/stat; the command name in
// parentheses may itself hold spaces and parentheses, so parse after the
// last ')'.
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// Alive reports whether a process with pid exists (zombies count as gone).
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}
