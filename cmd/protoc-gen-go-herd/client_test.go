package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jobsv1 "github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/handleronly/gen/jobs/v1"
	"github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/handleronly/gen/jobs/v1/jobsv1herd"
	"github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/internalapi/callapi"
	controlv1 "github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/internalapi/gen/control/v1"
	filesv1 "github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/responses/gen/files/v1"
	"github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/responses/gen/files/v1/filesv1herd"
	samev1 "github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/samepackage/gen/same/v1"
	counterv1 "github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/simple/gen/counter/v1"
	"github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/simple/gen/counter/v1/counterv1herd"
	privv1 "github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/unexported/gen/priv/v1"
	"github.com/herd-go/herd/runtime"

	// The keywords case compiles too.
	_ "github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/keywords/gen/keywords/v1/keywordsv1herd"
)

// The tests of this file use the code generated for the compiled cases
// (simple, samepackage, internalapi, handleronly), kept in sync with the
// generator by TestGolden.

// counter implements Add and leaves Reset to the embedded
// UnimplementedCounterServiceHandler.
type counter struct {
	counterv1herd.UnimplementedCounterServiceHandler

	mu       sync.Mutex
	value    int64
	deadline bool // whether the last call's context had a deadline
}

func (c *counter) Add(ctx context.Context, req *counterv1.AddRequest) (*counterv1.AddResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.value += req.GetDelta()
	_, c.deadline = ctx.Deadline()
	return &counterv1.AddResponse{Value: c.value}, nil
}

func (c *counter) get() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.value
}

func newCounterClient(t *testing.T, impl counterv1herd.CounterServiceHandler, opts ...runtime.HandlerOption) counterv1herd.CounterServiceClient {
	t.Helper()
	mux := runtime.NewMux()
	if err := counterv1herd.RegisterCounterServiceHandler(mux, impl, opts...); err != nil {
		t.Fatalf("RegisterCounterServiceHandler: %v", err)
	}
	return counterv1herd.NewCounterServiceClient(mux)
}

func TestGeneratedCallAndSend(t *testing.T) {
	impl := new(counter)
	client := newCounterClient(t, impl)
	ctx := t.Context()

	res, err := client.Add(ctx, &counterv1.AddRequest{Delta: 2})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if res.GetValue() != 2 {
		t.Errorf("Add returned %d, want 2", res.GetValue())
	}
	if err := client.SendAdd(ctx, &counterv1.AddRequest{Delta: 3}); err != nil {
		t.Fatalf("SendAdd: %v", err)
	}
	// A runtime.Mux runs the handler of a Send before returning.
	if got := impl.get(); got != 5 {
		t.Errorf("after Add(2) and SendAdd(3) the counter is %d, want 5", got)
	}
}

// TestGeneratedBroadcastClient: the broadcast client sends through any
// runtime.SendConn (here a Mux) and has the Send methods only.
func TestGeneratedBroadcastClient(t *testing.T) {
	impl := new(counter)
	mux := runtime.NewMux()
	if err := counterv1herd.RegisterCounterServiceHandler(mux, impl); err != nil {
		t.Fatal(err)
	}
	var conn runtime.SendConn = mux
	all := counterv1herd.NewCounterServiceBroadcastClient(conn)
	if err := all.SendAdd(t.Context(), &counterv1.AddRequest{Delta: 4}); err != nil {
		t.Fatalf("SendAdd: %v", err)
	}
	if got := impl.get(); got != 4 {
		t.Errorf("after SendAdd(4) the counter is %d, want 4", got)
	}
	err := all.SendReset(t.Context(), &counterv1.ResetRequest{})
	if code := runtime.CodeOf(err); code != runtime.CodeUnimplemented {
		t.Errorf("SendReset: code %v (error %v), want %v", code, err, runtime.CodeUnimplemented)
	}
	if _, ok := all.(interface {
		Add(context.Context, *counterv1.AddRequest, ...runtime.CallOption) (*counterv1.AddResponse, error)
	}); ok {
		t.Error("the broadcast client has a request/response method")
	}
}

func TestGeneratedUnimplemented(t *testing.T) {
	client := newCounterClient(t, new(counter))
	_, err := client.Reset(t.Context(), &counterv1.ResetRequest{})
	if code := runtime.CodeOf(err); code != runtime.CodeUnimplemented {
		t.Fatalf("Reset: code %v (error %v), want %v", code, err, runtime.CodeUnimplemented)
	}
	if want := "counter.v1.CounterService.Reset is not implemented"; !strings.Contains(err.Error(), want) {
		t.Errorf("Reset: error %q does not say %q", err, want)
	}
	err = client.SendReset(t.Context(), &counterv1.ResetRequest{})
	if code := runtime.CodeOf(err); code != runtime.CodeUnimplemented {
		t.Errorf("SendReset: code %v (error %v), want %v", code, err, runtime.CodeUnimplemented)
	}
}

func TestGeneratedHandlerOptions(t *testing.T) {
	impl := new(counter)
	client := newCounterClient(t, impl, runtime.WithHandlerTimeout(time.Minute))
	if _, err := client.Add(t.Context(), &counterv1.AddRequest{}); err != nil {
		t.Fatal(err)
	}
	if !impl.deadline {
		t.Error("the handler's context has no deadline: the handler options did not reach runtime.NewUnaryHandler")
	}
}

// nilEmbed embeds the Unimplemented handler by pointer, which is nil unless
// set.
type nilEmbed struct {
	*counterv1herd.UnimplementedCounterServiceHandler
}

func TestGeneratedRegisterRejectsNilEmbedding(t *testing.T) {
	for _, impl := range []counterv1herd.CounterServiceHandler{nilEmbed{}, &nilEmbed{}} {
		err := counterv1herd.RegisterCounterServiceHandler(runtime.NewMux(), impl)
		if err == nil {
			t.Fatalf("registering %T with a nil embedded handler: no error", impl)
		}
		if want := "embeds a nil *counterv1herd.UnimplementedCounterServiceHandler"; !strings.Contains(err.Error(), want) {
			t.Errorf("registering %T: error %q does not say %q", impl, err, want)
		}
	}

	// Embedding a non-nil pointer works.
	impl := nilEmbed{new(counterv1herd.UnimplementedCounterServiceHandler)}
	client := newCounterClient(t, impl)
	_, err := client.Add(t.Context(), &counterv1.AddRequest{})
	if code := runtime.CodeOf(err); code != runtime.CodeUnimplemented {
		t.Errorf("Add: code %v (error %v), want %v", code, err, runtime.CodeUnimplemented)
	}
}

// bare implements the handler interface without embedding.
type bare struct{}

func (bare) Add(context.Context, *counterv1.AddRequest) (*counterv1.AddResponse, error) {
	return &counterv1.AddResponse{Value: 1}, nil
}

func (bare) Reset(context.Context, *counterv1.ResetRequest) (*counterv1.ResetResponse, error) {
	return nil, errors.New("no reset")
}

func TestGeneratedRegister(t *testing.T) {
	mux := runtime.NewMux()
	if err := counterv1herd.RegisterCounterServiceHandler(mux, bare{}); err != nil {
		t.Fatalf("RegisterCounterServiceHandler: %v", err)
	}
	for _, p := range []string{counterv1herd.CounterServiceAddProcedure, counterv1herd.CounterServiceResetProcedure} {
		if h := mux.Handler(p); h == nil || h.Procedure() != p {
			t.Errorf("no handler for %s", p)
		}
	}
	if p := counterv1herd.CounterServiceAddProcedure; p != "/"+counterv1herd.CounterServiceName+"/Add" {
		t.Errorf("CounterServiceAddProcedure = %q", p)
	}
	err := counterv1herd.RegisterCounterServiceHandler(mux, bare{})
	if !errors.Is(err, runtime.ErrDuplicateProcedure) {
		t.Errorf("registering twice: %v, want ErrDuplicateProcedure", err)
	}
}

// TestGeneratedSamePackage calls through the code generated with an empty
// package_suffix, which lives in the package of counter.pb.go.
func TestGeneratedSamePackage(t *testing.T) {
	mux := runtime.NewMux()
	impl := &samePackageCounter{}
	if err := samev1.RegisterCounterServiceHandler(mux, impl); err != nil {
		t.Fatalf("RegisterCounterServiceHandler: %v", err)
	}
	client := samev1.NewCounterServiceClient(mux)
	res, err := client.Add(t.Context(), &samev1.AddRequest{Delta: 3})
	if err != nil || res.GetValue() != 3 {
		t.Fatalf("Add: %v, %v; want value 3", res, err)
	}
	_, err = client.Reset(t.Context(), &samev1.ResetRequest{})
	if code := runtime.CodeOf(err); code != runtime.CodeUnimplemented {
		t.Errorf("Reset: code %v (error %v), want %v", code, err, runtime.CodeUnimplemented)
	}
}

type samePackageCounter struct {
	samev1.UnimplementedCounterServiceHandler
	value int64
}

func (c *samePackageCounter) Add(_ context.Context, req *samev1.AddRequest) (*samev1.AddResponse, error) {
	c.value += req.GetDelta()
	return &samev1.AddResponse{Value: c.value}, nil
}

// TestGeneratedInternalAPI calls through the code generated with
// runtime_import: the package of control.pb.go, calling callapi.
func TestGeneratedInternalAPI(t *testing.T) {
	mux := new(callapi.Mux)
	if err := controlv1.RegisterControlServiceHandler(mux, hello{}); err != nil {
		t.Fatalf("RegisterControlServiceHandler: %v", err)
	}
	client := controlv1.NewControlServiceClient(mux)
	res, err := client.Hello(t.Context(), &controlv1.HelloRequest{ProtocolVersion: 7})
	if err != nil || res.GetProtocolVersion() != 7 {
		t.Fatalf("Hello: %v, %v; want protocol version 7", res, err)
	}
	err = controlv1.NewControlServiceBroadcastClient(mux).SendRejected(t.Context(), &controlv1.RejectedRequest{})
	var e *callapi.Error
	if !errors.As(err, &e) || e.Code != callapi.CodeUnimplemented {
		t.Errorf("SendRejected: %v, want a callapi.Error with CodeUnimplemented", err)
	}
	if err := controlv1.RegisterControlServiceHandler(new(callapi.Mux), &nilHello{}); err == nil ||
		!strings.Contains(err.Error(), "embeds a nil *controlv1.UnimplementedControlServiceHandler") {
		t.Errorf("registering a nil embedded handler: %v", err)
	}
}

type hello struct {
	controlv1.UnimplementedControlServiceHandler
}

func (hello) Hello(_ context.Context, req *controlv1.HelloRequest) (*controlv1.HelloResponse, error) {
	return &controlv1.HelloResponse{ProtocolVersion: req.GetProtocolVersion()}, nil
}

type nilHello struct {
	*controlv1.UnimplementedControlServiceHandler
}

// TestGeneratedHandlerOnly serves the handler-only EventService: it
// registers and dispatches like any service, by its procedure constants.
func TestGeneratedHandlerOnly(t *testing.T) {
	mux := runtime.NewMux()
	ev := &jobEvents{}
	if err := jobsv1herd.RegisterEventServiceHandler(mux, ev); err != nil {
		t.Fatalf("RegisterEventServiceHandler: %v", err)
	}
	err := mux.Send(t.Context(), jobsv1herd.EventServiceFinishedProcedure, &jobsv1.FinishedEvent{Job: 9, Ok: true})
	if err != nil {
		t.Fatalf("Finished: %v", err)
	}
	if ev.finished != 9 {
		t.Errorf("the handler saw job %d, want 9", ev.finished)
	}
	err = mux.Send(t.Context(), jobsv1herd.EventServiceStartedProcedure, &jobsv1.StartedEvent{Job: 9})
	if code := runtime.CodeOf(err); code != runtime.CodeUnimplemented {
		t.Errorf("Started: code %v (error %v), want %v", code, err, runtime.CodeUnimplemented)
	}
	// JobService, in the same file but not handler-only, has its client.
	var _ jobsv1herd.JobServiceClient = jobsv1herd.NewJobServiceClient(mux)
}

type jobEvents struct {
	jobsv1herd.UnimplementedEventServiceHandler
	finished, cancelled uint64
}

func (e *jobEvents) Finished(_ context.Context, ev *jobsv1.FinishedEvent) (*jobsv1.EventResponse, error) {
	e.finished = ev.GetJob()
	return nil, nil
}

// Cancelled returns google.protobuf.Empty in the .proto file: in a
// handler_only service its handler returns only an error.
func (e *jobEvents) Cancelled(_ context.Context, ev *jobsv1.CancelledEvent) error {
	if ev.GetJob() == 0 {
		return runtime.Errorf(runtime.CodeInvalidArgument, "no job")
	}
	e.cancelled = ev.GetJob()
	return nil
}

// TestGeneratedEventHandler checks the handler of a handler_only method that
// returns google.protobuf.Empty: it returns only an error, which reaches the
// caller as the call's error.
func TestGeneratedEventHandler(t *testing.T) {
	mux := runtime.NewMux()
	ev := &jobEvents{}
	if err := jobsv1herd.RegisterEventServiceHandler(mux, ev); err != nil {
		t.Fatalf("RegisterEventServiceHandler: %v", err)
	}
	if err := mux.Send(t.Context(), jobsv1herd.EventServiceCancelledProcedure, &jobsv1.CancelledEvent{Job: 4}); err != nil || ev.cancelled != 4 {
		t.Fatalf("Cancelled: %v, handler saw job %d; want nil, 4", err, ev.cancelled)
	}
	err := mux.Send(t.Context(), jobsv1herd.EventServiceCancelledProcedure, &jobsv1.CancelledEvent{})
	if runtime.CodeOf(err) != runtime.CodeInvalidArgument {
		t.Errorf("Cancelled without a job: %v, want CodeInvalidArgument", err)
	}
}

// TestGeneratedUnexported calls a service generated with the unexported
// option from inside its package (privv1.RoundTrip, written by hand there).
func TestGeneratedUnexported(t *testing.T) {
	if got, err := privv1.RoundTrip(t.Context(), 3); err != nil || got != 3 {
		t.Fatalf("RoundTrip = %d, %v; want 3, nil", got, err)
	}
}

// fileServer attaches the file it opens to its reply.
type fileServer struct {
	filesv1herd.UnimplementedFileServiceHandler
	replied chan struct{}
}

func (s *fileServer) Open(_ context.Context, req *filesv1.OpenRequest) (*runtime.Response[filesv1.OpenResponse], error) {
	f, err := os.Open(req.GetPath())
	if err != nil {
		return nil, runtime.NewError(runtime.CodeNotFound, err)
	}
	defer f.Close() // AttachFiles duplicates the descriptor
	fi, err := f.Stat()
	if err != nil {
		return nil, runtime.NewError(runtime.CodeInternal, err)
	}
	res := runtime.NewResponse(&filesv1.OpenResponse{Size: fi.Size()}).AttachFiles(f)
	return res.AfterReply(func() { close(s.replied) }), nil
}

// TestGeneratedResponses checks a service of the responses option: its
// handler returns a *runtime.Response with a file attached and an after
// step, and the caller receives the file with WithResponseFiles.
func TestGeneratedResponses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("herd"), 0o600); err != nil {
		t.Fatal(err)
	}
	mux := runtime.NewMux()
	srv := &fileServer{replied: make(chan struct{})}
	if err := filesv1herd.RegisterFileServiceHandler(mux, srv); err != nil {
		t.Fatalf("RegisterFileServiceHandler: %v", err)
	}
	var files []*os.File
	res, err := filesv1herd.NewFileServiceClient(mux).Open(t.Context(), &filesv1.OpenRequest{Path: path}, runtime.WithResponseFiles(&files))
	if err != nil || res.GetSize() != 4 {
		t.Fatalf("Open = %v, %v; want size 4", res, err)
	}
	select {
	case <-srv.replied:
	default:
		t.Error("the after step did not run")
	}
	if len(files) != 1 {
		t.Fatalf("%d files attached, want 1", len(files))
	}
	defer files[0].Close()
	b, err := io.ReadAll(files[0])
	if err != nil || string(b) != "herd" {
		t.Errorf("the attached file reads %q, %v; want %q", b, err, "herd")
	}
	if _, err := filesv1herd.NewFileServiceClient(mux).Open(t.Context(), &filesv1.OpenRequest{Path: filepath.Join(path, "none")}); runtime.CodeOf(err) != runtime.CodeNotFound {
		t.Errorf("Open of a missing file: %v, want CodeNotFound", err)
	}
}
