//go:build linux

package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/herd-go/herd/runtime"
)

// procOwner is the owner of /proc/PID/status: root for a non-dumpable
// process, the process's own user otherwise.
func procOwner(t *testing.T, pid int) uint32 {
	t.Helper()
	fi, err := os.Stat(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

// TestNonDumpableWorkers is issue 9's finding 3: workers of one user could
// take each other's descriptors (a sibling's link) with pidfd_getfd. A
// non-dumpable worker can be reached that way only with CAP_SYS_PTRACE.
// Workers run with a credential other than the primary's are non-dumpable
// by default; WithNonDumpable turns it on or off.
func TestNonDumpableWorkers(t *testing.T) {
	cases := []nodumpCase{
		{"own credential", false, nil, "dumpable=1", "ok"},
		{"own credential, sentinel from the user's env ignored", false,
			[]runtime.PrimaryOption{runtime.WithEnv("HERD_WORKER_NONDUMPABLE=1")}, "dumpable=1", "ok"},
		{"own credential, WithNonDumpable(true)", false,
			[]runtime.PrimaryOption{runtime.WithNonDumpable(true)}, "dumpable=0", "err EPERM"},
	}
	if os.Getuid() == 0 {
		// Root's workers have CAP_SYS_PTRACE: a non-dumpable root worker
		// is still reachable by its root siblings, by design.
		cases[2].getfd = ""
		cases = append(cases,
			nodumpCase{"other credential", true, nil, "dumpable=0", "err EPERM"},
			nodumpCase{"other credential, WithNonDumpable(false)", true,
				[]runtime.PrimaryOption{runtime.WithNonDumpable(false)}, "dumpable=1", "ok"},
			// The kernel makes a process that cannot read the program it
			// executes non-dumpable at execve: no window at all.
			nodumpCase{"other credential, execute-only program, WithNonDumpable(false)", true,
				[]runtime.PrimaryOption{runtime.WithNonDumpable(false)}, "dumpable=0", "err EPERM"},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c *listenCluster
			if tc.nobody {
				var work string
				c, work = untrustedCluster(t, tc.opts...)
				if strings.Contains(tc.name, "execute-only") {
					if err := os.Chmod(filepath.Join(filepath.Dir(work), "herd.test"), 0o711); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				c = newListenCluster(t, tc.opts...)
			}
			ws := c.start(2)
			if tc.nobody && os.Getuid() == 0 {
				// Nothing of root's: not its groups either.
				if got, want := c.do(ws[0], "ids"), fmt.Sprintf("uid=%d gid=%d groups=[]", nobody, nobody); got != want {
					t.Errorf("worker: %s, want %s", got, want)
				}
			}
			for _, w := range ws {
				if got := c.do(w, "dumpable"); got != tc.dumpable {
					t.Errorf("worker %d: %s, want %s", w.ID(), got, tc.dumpable)
				}
				if got := c.do(w, "getenv HERD_WORKER_NONDUMPABLE"); got != `false ""` {
					t.Errorf("worker %d: the sentinel is still in its environment: %s", w.ID(), got)
				}
			}
			// The first worker takes the second's descriptors, its link
			// among them.
			if tc.getfd != "" {
				got := c.do(ws[0], fmt.Sprintf("getfds %d", ws[1].PID()))
				t.Logf("a sibling's pidfd_getfd: %s", got)
				if !strings.HasPrefix(got, tc.getfd) || tc.getfd == "ok" && strings.HasSuffix(got, "unix=0") {
					t.Errorf("sibling's pidfd_getfd: %s, want %s", got, tc.getfd)
				}
			}
			// A non-dumpable process's /proc files belong to root.
			wantOwner := uint32(os.Getuid())
			switch {
			case tc.dumpable == "dumpable=0":
				wantOwner = 0
			case tc.nobody && os.Getuid() == 0:
				wantOwner = nobody
			}
			if owner := procOwner(t, ws[1].PID()); owner != wantOwner {
				t.Errorf("/proc/%d/status owned by %d, want %d", ws[1].PID(), owner, wantOwner)
			}
		})
	}
}

// nodumpCase is a cluster of TestNonDumpableWorkers and what its workers
// must show.
type nodumpCase struct {
	name     string
	nobody   bool // run the workers as nobody (when root)
	opts     []runtime.PrimaryOption
	dumpable string // what a worker's prctl(PR_GET_DUMPABLE) says
	getfd    string // a sibling's pidfd_getfd of its descriptors; "" not checked
}
