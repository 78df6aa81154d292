//go:build unix

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// The test binary doubles as the example (HERD_JOBS_MAIN=1) and as its
// workers (the runtime's sentinel).
func TestMain(m *testing.M) {
	if runtime.IsWorker() || os.Getenv("HERD_JOBS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// run runs the example with args and returns its stdout, stderr and exit
// status.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	base := herdtest.Take()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "HERD_JOBS_MAIN=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = time.Minute // bounds the wait for output after an exit
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run: %v\nstderr:\n%s", err, errOut.String())
	}
	herdtest.Check(t, base, 10*time.Second)
	return out.String(), errOut.String(), code
}

func TestJobsAllOK(t *testing.T) {
	stdout, stderr, code := run(t, "-workers", "3", "-jobs", "40", "-rounds", "5000")
	if want := "jobs=40 ok=40 failed=0 workers=3\n"; stdout != want || code != 0 {
		t.Errorf("stdout %q, status %d; want %q, status 0\nstderr:\n%s", stdout, code, want, stderr)
	}
}

// TestJobsFaultInjected: worker 2 of 3 corrupts its digests; round-robin
// gave it jobs 2, 5, 8, ... so exactly those fail, and the exit status says
// so.
func TestJobsFaultInjected(t *testing.T) {
	stdout, stderr, code := run(t, "-workers", "3", "-jobs", "10", "-rounds", "1000", "-fault-worker", "2")
	if want := "jobs=10 ok=7 failed=3 workers=3\n"; stdout != want || code != 1 {
		t.Errorf("stdout %q, status %d; want %q, status 1\nstderr:\n%s", stdout, code, want, stderr)
	}
	failed := regexp.MustCompile(`job (\d+) on worker (\d+) failed: digest`).FindAllStringSubmatch(stderr, -1)
	var got []string
	for _, m := range failed {
		if m[2] != "2" {
			t.Errorf("job %s failed on worker %s", m[1], m[2])
		}
		got = append(got, m[1])
	}
	if strings.Join(got, ",") != "2,5,8" {
		t.Errorf("failed jobs %v, want 2,5,8\nstderr:\n%s", got, stderr)
	}
}

func TestJobsBadFlags(t *testing.T) {
	stdout, _, code := run(t, "-workers", "0")
	if stdout != "" || code != 2 {
		t.Errorf("stdout %q, status %d; want nothing, status 2", stdout, code)
	}
}

// TestJobsKillWorker: the primary kills worker 2 during its third job; the
// pool replaces it (worker 4), the jobs it was running are retried on
// other workers, and every job is still ok.
func TestJobsKillWorker(t *testing.T) {
	stdout, stderr, code := run(t, "-workers", "3", "-jobs", "30", "-rounds", "20000", "-kill-worker", "2")
	if want := "jobs=30 ok=30 failed=0 workers=3\n"; stdout != want || code != 0 {
		t.Errorf("stdout %q, status %d; want %q, status 0\nstderr:\n%s", stdout, code, want, stderr)
	}
	for _, want := range []string{
		"jobs: killing worker 2 during job ",
		"jobs: worker 2 died (code -1, signal \"SIGKILL\")",
		"jobs: worker 4 ready in slot 1",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	killed := regexp.MustCompile(`killing worker 2 during job (\d+)`).FindStringSubmatch(stderr)
	if killed == nil || !strings.Contains(stderr, "jobs: job "+killed[1]+": worker 2 is gone") {
		t.Errorf("the job worker 2 was running was not retried:\n%s", stderr)
	}
}
