package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	counterv1 "github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/simple/gen/counter/v1"
	"github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/simple/gen/counter/v1/counterv1herd"
	"github.com/herd-go/herd/runtime"

	// The keywords case compiles too.
	_ "github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata/keywords/gen/keywords/v1/keywordsv1herd"
)

// The tests of this file use the code generated for the simple case, kept
// in sync with the generator by TestGolden.

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
