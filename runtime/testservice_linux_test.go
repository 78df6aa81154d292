//go:build linux

package runtime_test

import (
	"fmt"

	"golang.org/x/sys/unix"

	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
)

// procDumpable returns prctl(PR_GET_DUMPABLE), for TestService.Inspect.
func procDumpable() (int, error) {
	return unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
}

// takeFDs takes every descriptor of process pid it can (0 to 63) with
// pidfd_getfd, as a hostile worker would take a sibling's link, and says
// how many it got, and how many were unix sockets (TestService.TakeFDs).
func takeFDs(pid int) *testv1.TakeFDsResponse {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return &testv1.TakeFDsResponse{Error: "pidfd_open " + err.Error()}
	}
	defer unix.Close(pidfd)
	var first error
	res := &testv1.TakeFDsResponse{}
	for target := range 64 {
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if err != nil {
			if first == nil && err != unix.EBADF {
				first = err
			}
			continue
		}
		res.Taken++
		if sa, err := unix.Getsockname(fd); err == nil {
			if _, ok := sa.(*unix.SockaddrUnix); ok {
				res.UnixSockets++
			}
		}
		unix.Close(fd)
	}
	switch {
	case res.Taken > 0:
	case first == unix.EPERM:
		res.Error = "EPERM"
	default:
		res.Error = fmt.Sprint(first)
	}
	return res
}
