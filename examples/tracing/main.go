// Command tracing carries a W3C trace context (the traceparent header)
// across the primary and a worker with herd's interceptors and per-call
// metadata, without any tracing library.
//
//	go run ./examples/tracing
//
// The primary forks one worker, starts a trace and calls the worker's
// Greet; the worker's handler logs, then reports to the primary's
// AuditService within the same trace. Every process logs with slog to
// stdout, one logfmt line per record; every line logged within a call
// carries trace_id (the same on both sides), span_id and parent_id:
//
//	level=INFO msg="greeting worker" side=primary worker=1 trace_id=4bf9… span_id=00f0…
//	level=INFO msg=greet side=worker-1 name=herd trace_id=4bf9… span_id=b7ad… parent_id=00f0…
//	level=INFO msg=audit side=primary event="greeted herd" trace_id=4bf9… span_id=… parent_id=b7ad…
//
// The interceptor (traceparent.go) is the same on both sides: on the calling
// side it writes the current span into the call's metadata, on the
// handling side it reads it and starts a child span for the handler.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	tracingv1 "github.com/herd-go/herd/examples/tracing/gen/tracing/v1"
	"github.com/herd-go/herd/examples/tracing/gen/tracing/v1/tracingv1herd"
	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
)

func main() {
	if runtime.IsWorker() {
		os.Exit(worker(os.Stdout))
	}
	os.Exit(primary(os.Stdout))
}

// newLogger logs logfmt lines without time (so that lines compare), with
// the trace of the record's context.
func newLogger(w io.Writer, side string) *slog.Logger {
	text := slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	return slog.New(traceHandler{text}).With("side", side)
}

func primary(stdout io.Writer) int {
	log := newLogger(stdout, "primary")
	p := runtime.NewPrimary(runtime.WithInterceptors(&tracer{log: log}))
	online := make(chan uint64, 1)
	if err := herdv1herd.RegisterEventServiceHandler(p, &events{online: online}); err != nil {
		log.Error("register", "error", err)
		return 1
	}
	if err := tracingv1herd.RegisterAuditServiceHandler(p, &audit{log: log}); err != nil {
		log.Error("register", "error", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := p.Fork(ctx)
	if err != nil {
		log.Error("fork", "error", err)
		return 1
	}
	select {
	case <-online:
	case <-ctx.Done():
		log.Error("worker did not come online")
		w.Kill(9)
		return 1
	}

	tctx, _ := startSpan(ctx)
	log.InfoContext(tctx, "greeting worker", "worker", w.ID())
	res, err := tracingv1herd.NewGreeterServiceClient(w).Greet(tctx, &tracingv1.GreetRequest{Name: "herd"})
	if err != nil {
		log.ErrorContext(tctx, "greet", "error", err)
		p.Disconnect(ctx)
		return 1
	}
	log.InfoContext(tctx, "greeted", "greeting", res.GetGreeting())

	if err := p.Disconnect(ctx); err != nil {
		log.Error("disconnect", "error", err)
		return 1
	}
	if err := p.Wait(ctx); err != nil {
		log.Error("wait", "error", err)
		return 1
	}
	fmt.Fprintln(stdout, "done")
	return 0
}

// events waits for the worker to be online.
type events struct {
	herdv1herd.UnimplementedEventServiceHandler
	online chan uint64
}

// Online implements herdv1herd.EventServiceHandler.
func (e *events) Online(ctx context.Context, ev *herdv1.OnlineEvent) error {
	e.online <- ev.GetWorker().GetId()
	return nil
}

// audit is the primary's AuditService.
type audit struct {
	tracingv1herd.UnimplementedAuditServiceHandler
	log *slog.Logger
}

// Record implements tracingv1herd.AuditServiceHandler.
func (a *audit) Record(ctx context.Context, req *tracingv1.RecordRequest) (*tracingv1.RecordResponse, error) {
	a.log.InfoContext(ctx, "audit", "event", req.GetEvent())
	return &tracingv1.RecordResponse{}, nil
}

func worker(stdout io.Writer) int {
	tr := &tracer{}
	self, err := runtime.NewSelf(runtime.WithInterceptors(tr))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := newLogger(stdout, fmt.Sprintf("worker-%d", self.ID()))
	tr.log = log // before Start: no call runs yet
	g := &greeter{log: log, audit: tracingv1herd.NewAuditServiceClient(self)}
	if err := tracingv1herd.RegisterGreeterServiceHandler(self, g); err != nil {
		log.Error("register", "error", err)
		return 1
	}
	if err := self.Start(context.Background()); err != nil {
		log.Error("start", "error", err)
		return 1
	}
	<-self.Done() // the runtime exits the process once disconnected
	return 0
}

// greeter is the worker's GreeterService.
type greeter struct {
	tracingv1herd.UnimplementedGreeterServiceHandler
	log   *slog.Logger
	audit tracingv1herd.AuditServiceClient
}

// Greet implements tracingv1herd.GreeterServiceHandler. The call to the
// primary is made with the handler's context, so it belongs to the trace.
func (g *greeter) Greet(ctx context.Context, req *tracingv1.GreetRequest) (*tracingv1.GreetResponse, error) {
	g.log.InfoContext(ctx, "greet", "name", req.GetName())
	if _, err := g.audit.Record(ctx, &tracingv1.RecordRequest{Event: "greeted " + req.GetName()}); err != nil {
		return nil, err
	}
	return &tracingv1.GreetResponse{Greeting: "hello, " + req.GetName()}, nil
}
