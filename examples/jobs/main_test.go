//go:build unix

package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/herd-go/herd/runtime/herdtest"
)

// The test binary doubles as the example (role "jobs", started by
// herdtest.Start) and as its workers, which inherit the role: main tells
// them apart by the runtime's sentinel.
func TestMain(m *testing.M) {
	herdtest.Main(m, herdtest.Roles{"jobs": func() int { main(); return 0 }})
}

// run runs the example with args until it exits and returns its stdout,
// stderr and exit status; the test's cleanup checks for leaks.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	herdtest.CheckLeaks(t)
	p := herdtest.Start(t, "jobs", herdtest.WithArgs(args...))
	code = p.Wait()
	var out strings.Builder
	for _, l := range p.Lines() {
		out.WriteString(l + "\n")
	}
	return out.String(), p.Stderr(), code
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
