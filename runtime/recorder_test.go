//go:build unix

package runtime_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
)

// waitLimit bounds every wait in these tests; reaching it is a failure, not
// a pacing device.
const waitLimit = 60 * time.Second

// recorder collects cluster events and test reports as logfmt-ish lines,
// "online 1", "exit 2 code=3 signal= after=false cause=EXIT_CAUSE_ERROR",
// "report 1 <message>", in the order they were handled.
type recorder struct {
	t      testing.TB
	mu     sync.Mutex
	lines  []string
	notify chan struct{}
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, notify: make(chan struct{}, 1)}
}

func (r *recorder) add(line string) {
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func empty() *emptypb.Empty { return &emptypb.Empty{} }

// register installs the event and report handlers on reg.
func (r *recorder) register(reg runtime.Registrar) {
	r.t.Helper()
	err := reg.Register(
		runtime.NewUnaryHandler("/herd.v1.EventService/Fork", func(ctx context.Context, ev *herdv1.ForkEvent) (*emptypb.Empty, error) {
			r.add(fmt.Sprintf("fork %d", ev.GetWorker().GetId()))
			return empty(), nil
		}),
		runtime.NewUnaryHandler("/herd.v1.EventService/Online", func(ctx context.Context, ev *herdv1.OnlineEvent) (*emptypb.Empty, error) {
			r.add(fmt.Sprintf("online %d", ev.GetWorker().GetId()))
			return empty(), nil
		}),
		runtime.NewUnaryHandler("/herd.v1.EventService/Listening", func(ctx context.Context, ev *herdv1.ListeningEvent) (*emptypb.Empty, error) {
			r.add(fmt.Sprintf("listening %d %s", ev.GetWorker().GetId(), ev.GetAddress().GetAddress()))
			return empty(), nil
		}),
		runtime.NewUnaryHandler("/herd.v1.EventService/Disconnect", func(ctx context.Context, ev *herdv1.DisconnectEvent) (*emptypb.Empty, error) {
			r.add(fmt.Sprintf("disconnect %d", ev.GetWorker().GetId()))
			return empty(), nil
		}),
		runtime.NewUnaryHandler("/herd.v1.EventService/Exit", func(ctx context.Context, ev *herdv1.ExitEvent) (*emptypb.Empty, error) {
			r.add(fmt.Sprintf("exit %d code=%d signal=%s after=%t cause=%s", ev.GetWorker().GetId(), ev.GetCode(), ev.GetSignal(), ev.GetExitedAfterDisconnect(), ev.GetCause()))
			return empty(), nil
		}),
		runtime.NewUnaryHandler("/herd.v1.EventService/Error", func(ctx context.Context, ev *herdv1.ErrorEvent) (*emptypb.Empty, error) {
			r.add(fmt.Sprintf("error %d %s %s", ev.GetWorker().GetId(), runtime.Code(ev.GetCode()), ev.GetMessage()))
			return empty(), nil
		}),
		runtime.NewUnaryHandler(reportProcedure, func(ctx context.Context, req *herdv1.ErrorEvent) (*herdv1.ErrorEvent, error) {
			w, ok := runtime.WorkerFromContext(ctx)
			if !ok {
				return nil, runtime.Errorf(runtime.CodeInternal, "no worker in context")
			}
			r.add(fmt.Sprintf("report %d %s", w.ID(), req.GetMessage()))
			return &herdv1.ErrorEvent{}, nil
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
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, l := range r.lines {
			if strings.HasPrefix(l, prefix) {
				r.mu.Unlock()
				return l
			}
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-deadline.C:
			r.t.Fatalf("no event %q; have %q", prefix, r.all())
		}
	}
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// of returns the recorded lines about worker id, without the ID.
func (r *recorder) of(id uint64) []string {
	var out []string
	for _, l := range r.all() {
		kind, rest, _ := strings.Cut(l, " ")
		wid, tail, _ := strings.Cut(rest, " ")
		if wid == fmt.Sprint(id) {
			out = append(out, strings.TrimSpace(kind+" "+tail))
		}
	}
	return out
}
