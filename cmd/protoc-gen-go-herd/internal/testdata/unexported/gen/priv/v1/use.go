package privv1

import (
	"context"
	"errors"
	"fmt"

	"github.com/herd-go/herd/runtime"
)

// This file is written by hand: it uses the package's own service through
// the unexported names that counter.herd.go declares, as herd's runtime
// uses its control protocol, for client_test.go (tests do not run under
// testdata).

// counter serves the unexported handler interface.
type counter struct {
	unimplementedCounterServiceHandler
	value int64
}

func (c *counter) Add(_ context.Context, req *AddRequest) (*AddResponse, error) {
	c.value += req.GetDelta()
	return &AddResponse{Value: c.value}, nil
}

// RoundTrip registers a counter on a runtime.Mux with
// registerCounterServiceHandler, calls its Add through newCounterServiceClient
// and its unimplemented Reset, and checks the procedure names, which are
// those of an exported service.
func RoundTrip(ctx context.Context, delta int64) (int64, error) {
	mux := runtime.NewMux()
	if err := registerCounterServiceHandler(mux, &counter{}); err != nil {
		return 0, err
	}
	client := newCounterServiceClient(mux)
	res, err := client.Add(ctx, &AddRequest{Delta: delta})
	if err != nil {
		return 0, err
	}
	if _, err := client.Reset(ctx, &ResetRequest{}); runtime.CodeOf(err) != runtime.CodeUnimplemented {
		return 0, fmt.Errorf("Reset: %v, want CodeUnimplemented", err)
	}
	if counterServiceAddProcedure != "/priv.v1.CounterService/Add" || counterServiceName != "priv.v1.CounterService" {
		return 0, errors.New("unexpected procedure or service name")
	}
	var _ counterServiceBroadcastClient = newCounterServiceBroadcastClient(mux)
	return res.GetValue(), nil
}
