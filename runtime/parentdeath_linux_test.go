//go:build linux

package runtime_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// Worker roles of the parent-death hook test (linuxRoles). Each worker's
// drain hook writes a marker file named by its PID into
// HERD_TEST_MARKER_DIR. "marker-main" calls Start from the main goroutine,
// as most programs do; "marker-goroutine" calls it from another goroutine
// while the main goroutine holds the main thread, so that Start certainly
// runs on another thread (the case in which the parent-death signal used to
// stay SIGKILL). That needs the main thread locked during initialisation,
// before herdtest.Main runs the role: the one thing done here, by role name.
func init() {
	if runtime.IsWorker() && os.Getenv(herdtest.EnvRole) == "marker-goroutine" {
		// Locked during initialisation, the main goroutine keeps the main
		// thread through main (runtime.LockOSThread's documentation).
		goruntime.LockOSThread()
	}
}

func markerWorker(fromGoroutine bool) int {
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		return 10
	}
	dir := os.Getenv("HERD_TEST_MARKER_DIR")
	marker := "drained"
	self.OnDisconnect(func(ctx context.Context) error {
		return os.WriteFile(filepath.Join(dir, strconv.Itoa(os.Getpid())), []byte(marker), 0o644)
	})
	start := func() int {
		ctx := context.Background()
		if err := self.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "Start:", err)
			return 12
		}
		if fromGoroutine && unix.Gettid() == os.Getpid() {
			marker = "test broken: Start ran on the main thread"
		}
		if err := self.Call(ctx, testv1herd.TestServiceReportProcedure, &testv1.ReportRequest{Message: "ready"}, &testv1.ReportResponse{}); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
		}
		return 0
	}
	if !fromGoroutine {
		if code := start(); code != 0 {
			return code
		}
		select {}
	}
	failed := make(chan int)
	go func() {
		goruntime.LockOSThread() // stay off the main thread (held by main)
		if code := start(); code != 0 {
			failed <- code
		}
	}()
	return <-failed
}

// TestPrimaryDeathRunsDrainHooks kills a primary (a child of the test) with
// SIGKILL and checks that each of its workers ran its drain hook before it
// exited, whether the worker called Start from main or from a goroutine.
func TestPrimaryDeathRunsDrainHooks(t *testing.T) {
	for _, mode := range []string{"marker-main", "marker-goroutine"} {
		t.Run(mode, func(t *testing.T) {
			herdtest.CheckLeaks(t)
			dir := t.TempDir()
			p := herdtest.Start(t, "primary", herdtest.WithEnv(envWorkerRole+"="+mode, "HERD_TEST_MARKER_DIR="+dir))
			var pids []int
			for _, f := range strings.Fields(strings.TrimPrefix(p.WaitLine("pids "), "pids ")) {
				pid, _ := strconv.Atoi(f)
				pids = append(pids, pid)
			}
			if len(pids) != 2 {
				t.Fatalf("primary printed pids %q", p.Lines())
			}
			// Hold pidfds before the primary dies, so that PID reuse cannot
			// fool the check.
			var watches []*herdtest.Watch
			for _, pid := range pids {
				w, err := herdtest.WatchPID(pid)
				if err != nil {
					t.Fatalf("watch %d: %v", pid, err)
				}
				watches = append(watches, w)
			}
			p.Signal(syscall.SIGKILL)
			p.WaitExit(-1)
			for i, w := range watches {
				if !w.Wait(waitLimit) {
					syscall.Kill(pids[i], syscall.SIGKILL)
					t.Errorf("worker %d survived its primary", pids[i])
				}
			}
			for _, pid := range pids {
				b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(pid)))
				if err != nil || string(b) != "drained" {
					t.Errorf("worker %d did not run its drain hook after its primary died: %q %v", pid, b, err)
				}
			}
		})
	}
}
