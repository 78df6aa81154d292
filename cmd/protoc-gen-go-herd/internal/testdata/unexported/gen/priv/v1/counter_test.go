package privv1

import (
	"context"
	"testing"

	"github.com/herd-go/herd/runtime"
)

// counter serves the unexported handler interface from inside the package,
// as herd's runtime serves its control protocol.
type counter struct {
	unimplementedCounterServiceHandler
	value int64
}

func (c *counter) Add(_ context.Context, req *AddRequest) (*AddResponse, error) {
	c.value += req.GetDelta()
	return &AddResponse{Value: c.value}, nil
}

// TestUnexportedNames calls the package's own service through its
// unexported client and handler, and checks that the procedure names are
// those of an exported service: the option changes Go names, not the wire.
func TestUnexportedNames(t *testing.T) {
	mux := runtime.NewMux()
	if err := registerCounterServiceHandler(mux, &counter{}); err != nil {
		t.Fatalf("registerCounterServiceHandler: %v", err)
	}
	client := newCounterServiceClient(mux)
	res, err := client.Add(context.Background(), &AddRequest{Delta: 2})
	if err != nil || res.GetValue() != 2 {
		t.Fatalf("Add = %v, %v; want 2, nil", res, err)
	}
	if _, err := client.Reset(context.Background(), &ResetRequest{}); runtime.CodeOf(err) != runtime.CodeUnimplemented {
		t.Errorf("Reset = %v, want CodeUnimplemented", err)
	}
	if counterServiceAddProcedure != "/priv.v1.CounterService/Add" || counterServiceName != "priv.v1.CounterService" {
		t.Errorf("names %q, %q", counterServiceAddProcedure, counterServiceName)
	}
	var _ counterServiceBroadcastClient = newCounterServiceBroadcastClient(mux)
}
