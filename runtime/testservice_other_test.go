//go:build unix && !linux

package runtime_test

import (
	"errors"

	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
)

// procDumpable fails: PR_GET_DUMPABLE is Linux's.
func procDumpable() (int, error) { return -1, errors.New("no prctl(PR_GET_DUMPABLE) here") }

// takeFDs fails: pidfd_getfd is Linux's.
func takeFDs(pid int) *testv1.TakeFDsResponse {
	return &testv1.TakeFDsResponse{Error: "no pidfd_getfd here"}
}
