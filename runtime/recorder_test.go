//go:build unix

package runtime_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// waitLimit bounds every wait in these tests; reaching it is a failure, not
// a pacing device.
const waitLimit = 60 * time.Second

// recorder is herdtest's event recorder (lines "online 1", "exit 2 code=3
// signal= after=false cause=EXIT_CAUSE_ERROR", ...) with the test reports
// added, "report 1 <message>", in the order they were handled.
type recorder struct {
	t testing.TB
	*herdtest.Events
	notify <-chan struct{}
}

func newRecorder(t testing.TB) *recorder {
	e := herdtest.NewEvents(t)
	e.Timeout = waitLimit
	return &recorder{t: t, Events: e, notify: e.Changed()}
}

func (r *recorder) add(line string) { r.Add(line) }

func empty() *emptypb.Empty { return &emptypb.Empty{} }

// register installs the event and report handlers on reg.
func (r *recorder) register(reg runtime.Registrar) {
	r.t.Helper()
	if err := r.Register(reg); err != nil {
		r.t.Fatal(err)
	}
	err := reg.Register(
		runtime.NewUnaryHandler(testv1herd.TestServiceReportProcedure, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
			w, ok := runtime.WorkerFromContext(ctx)
			if !ok {
				return nil, runtime.Errorf(runtime.CodeInternal, "no worker in context")
			}
			r.add(fmt.Sprintf("report %d %s", w.ID(), req.GetMessage()))
			return &testv1.ReportResponse{}, nil
		}),
	)
	if err != nil {
		r.t.Fatal(err)
	}
}

// waitFor waits until a line with the prefix has been recorded and returns
// it.
func (r *recorder) waitFor(prefix string) string {
	r.t.Helper()
	return r.WaitFor(prefix)
}

func (r *recorder) all() []string { return r.All() }

// of returns the recorded lines about worker id, without the ID.
func (r *recorder) of(id uint64) []string { return r.Of(id) }
