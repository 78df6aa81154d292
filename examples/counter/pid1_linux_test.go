//go:build linux

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/herd-go/herd/runtime/herdtest"
)

// childOf returns the first child process of pid, from /proc.
func childOf(pid int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			return c
		}
	}
	return 0
}

// TestPID1Signals runs the example as a container runs it: the primary is
// PID 1 of a new PID namespace (unshare --pid --fork), where the kernel
// gives it no default signal action, so SIGTERM or SIGINT that it did not
// catch would do nothing. The pool catches them: the request in flight
// finishes, the totals are printed and the primary exits 0 (unshare exits
// with its status).
func TestPID1Signals(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("a PID namespace needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			herdtest.CheckLeaks(t)
			// The workers' PIDs are the namespace's: the namespace ends
			// with its PID 1 (--kill-child), not for the cleanup to watch.
			e := herdtest.Start(t, "counter", herdtest.WithProgram("unshare"),
				herdtest.WithArgs("--pid", "--fork", "--kill-child", "--mount-proc",
					exe, "-addr", "127.0.0.1:0", "-workers", "2"),
				herdtest.WithProcessGroup())
			line := e.WaitLine("listening addr=")
			for _, pid := range onlinePIDs(e) {
				if pid <= 1 {
					t.Errorf("worker PID %d in the namespace", pid)
				}
			}
			primary := childOf(e.PID())
			if primary == 0 {
				t.Fatalf("no primary under unshare (%s)", e.Stderr())
			}
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", primary))
			if err != nil || !strings.Contains(string(st), "\nNSpid:\t"+strconv.Itoa(primary)+"\t1\n") {
				t.Fatalf("the primary is not PID 1 of its namespace: %q", st)
			}
			addr := strings.TrimPrefix(line, "listening addr=")
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: herdtest.DefaultTimeout}
			slow := make(chan error, 1)
			go func() {
				res, err := client.Get("http://" + addr + "/?delay=500ms")
				if err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				slow <- err
			}()
			// Every /stats counts itself: the slow request has reached a
			// worker once the total passes the /stats calls made so far.
			calls := 0
			herdtest.WaitUntil(t, "the slow request reached a worker", func() bool {
				calls++
				var n int
				fmt.Sscanf(get(t, client, "http://"+addr+"/stats"), "total=%d", &n)
				return n > calls
			})
			syscall.Kill(primary, sig)
			if err := herdtest.Receive(t, slow, "the request in flight"); err != nil {
				t.Errorf("the request in flight at %v: %v", sig, err)
			}
			e.WaitLine("total=")
			e.WaitExit(0) // unshare exits with the primary's status
		})
	}
}
