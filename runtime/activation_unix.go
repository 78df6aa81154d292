//go:build unix

package runtime

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// activation is what systemd's socket activation passed to this process,
// once taken over: descriptors 3, 4, ... and their names.
var activation struct {
	mu    sync.Mutex
	fds   []int
	names []string
}

// takeActivation takes over the descriptors systemd passed to this process
// (socket activation), as go-systemd's activation.Files(true) does: when
// LISTEN_PID is this process, descriptors 3 to 3+LISTEN_FDS-1 are made
// close-on-exec and LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are removed
// from the environment. systemd passes them without close-on-exec, so
// without this every process the primary starts (each worker among them)
// would inherit the ones os/exec does not overwrite: a worker's descriptor
// 3 is its link, but 4 and beyond leaked into every worker, with
// variables that describe them. Their numbers and names are kept, so that
// workers still listen on them with WithListenFD and WithListenFDName (the
// primary duplicates them; close-on-exec is not inherited by duplicates
// sent to a worker).
//
// A worker never does this: its descriptor 3 is its link. Calling it again
// takes over what the environment then describes, if anything.
func takeActivation() {
	if IsWorker() {
		return
	}
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if err != nil || n <= 0 {
		return
	}
	fds := make([]int, n)
	for i := range n {
		fds[i] = 3 + i
		unix.CloseOnExec(fds[i])
	}
	activation.mu.Lock()
	activation.fds = fds
	activation.names = names[:min(len(names), n)]
	activation.mu.Unlock()
}

// systemdFD finds a descriptor passed by socket activation by name:
// LISTEN_FDS descriptors from 3 on, named in order by LISTEN_FDNAMES
// (colon-separated), for this process (LISTEN_PID).
func systemdFD(name string) (int, error) {
	takeActivation()
	activation.mu.Lock()
	defer activation.mu.Unlock()
	if len(activation.fds) == 0 {
		return -1, errors.New("no descriptors passed by systemd (LISTEN_FDS for LISTEN_PID)")
	}
	for i, n := range activation.names {
		if n == name {
			return activation.fds[i], nil
		}
	}
	return -1, fmt.Errorf("no descriptor named %q in LISTEN_FDNAMES", name)
}
