//go:build unix

package runtime_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// unprivilegedPrimaryMain is a primary run as an unprivileged user: its
// worker listens on port 1 and reports whether the primary's bind failure
// came back as EACCES.
func unprivilegedPrimaryMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	p := runtime.NewPrimary()
	result := make(chan string, 1)
	p.Register(runtime.NewUnaryHandler(testv1herd.TestServiceReportProcedure, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
		result <- req.GetMessage()
		return &testv1.ReportResponse{}, nil
	}))
	if _, err := p.Fork(ctx, herdtest.ForkRole("listenpriv")); err != nil {
		fmt.Println("fork:", err)
		return 2
	}
	select {
	case r := <-result:
		fmt.Println("result", r)
	case <-ctx.Done():
		fmt.Println("no report")
	}
	p.Disconnect(ctx)
	p.Wait(ctx)
	return 0
}

// TestListenPermissionDenied: a worker's Listen on a privileged port, with
// an unprivileged primary, fails with an error matching EACCES. The tests
// run as root, so the primary under test runs as nobody.
func TestListenPermissionDenied(t *testing.T) {
	if os.Getuid() != 0 {
		// Unprivileged already: TestListenBindErrors asserts EACCES directly.
		t.Skip("covered by TestListenBindErrors when not root")
	}
	herdtest.CheckLeaks(t)
	dir, bin := publicTestBinary(t)
	p := herdtest.Start(t, "unprivileged-primary", herdtest.WithProgram(bin), herdtest.WithArgs("-test.run=^$"),
		herdtest.WithDir(dir), herdtest.WithEnv("GOCOVERDIR="), herdtest.WithCredential(nobody, nobody))
	p.WaitExit(0)
	if got := strings.Join(p.Lines(), "\n"); got != "result eacces=true" {
		t.Errorf("got %q, want %q", got, "result eacces=true")
	}
}
