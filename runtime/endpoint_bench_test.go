//go:build linux || darwin

package runtime

import (
	"context"
	"log/slog"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime/internal/link"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
)

// endpointPair starts two endpoints over a socketpair in this process: a
// serves local (calls from b), b serves nothing. Both have the link-wide
// interceptors ics.
func endpointPair(b testing.TB, local *Mux, ics ...Interceptor) (ea, eb *endpoint) {
	b.Helper()
	fa, fb, err := link.Pair()
	if err != nil {
		b.Fatal(err)
	}
	cfg := endpointConfig{logger: slog.New(slog.DiscardHandler), interceptors: ics}.withDefaults()
	noErr := func(Code, string, error) {}
	ea = newEndpoint(cfg, NewMux(), local, nil, context.Background(), noErr)
	eb = newEndpoint(cfg, NewMux(), NewMux(), nil, context.Background(), noErr)
	if err := ea.start(fa); err != nil {
		b.Fatal(err)
	}
	if err := eb.start(fb); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ea.link.Close()
		eb.link.Close()
		<-ea.closed
		<-eb.closed
	})
	return ea, eb
}

// BenchmarkEndpointRoundTrip: request/response calls between two endpoints
// in this process (no process boundary): the runtime's own overhead over
// link.BenchmarkLinkRoundTrip.
func BenchmarkEndpointRoundTrip(b *testing.B) {
	local := NewMux()
	local.Register(NewUnaryHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		return &testv1.EchoResponse{Message: req.GetMessage()}, nil
	}))
	_, eb := endpointPair(b, local)
	ctx := context.Background()
	req, res := &testv1.EchoRequest{Message: "ping"}, &testv1.EchoResponse{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := eb.userCall(ctx, procEcho, req, res, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEndpointOneWay: fire-and-forget messages from one endpoint to
// the other's handler, in this process.
func BenchmarkEndpointOneWay(b *testing.B) {
	local := NewMux()
	done := make(chan struct{})
	var n int
	local.Register(NewUnaryHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		if n++; n == b.N {
			close(done)
		}
		return nil, nil
	}))
	_, eb := endpointPair(b, local)
	ctx := context.Background()
	req := &testv1.EchoRequest{Message: "ping"}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := eb.userSend(ctx, procEcho, req, nil); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}

// passThrough is an interceptor that only calls next.
var passThrough = UnaryInterceptorFunc(func(next UnaryFunc) UnaryFunc {
	return func(ctx context.Context, req *Request) (proto.Message, error) { return next(ctx, req) }
})

// BenchmarkEndpointRoundTripIntercepted: BenchmarkEndpointRoundTrip with a
// pass-through interceptor on both ends and one metadata entry: the cost of
// using them.
func BenchmarkEndpointRoundTripIntercepted(b *testing.B) {
	local := NewMux()
	local.Register(NewUnaryHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		return &testv1.EchoResponse{Message: MetadataFromContext(ctx).Get("k")}, nil
	}))
	_, eb := endpointPair(b, local, passThrough)
	ctx := AppendToOutgoingContext(context.Background(), "k", "v")
	req, res := &testv1.EchoRequest{Message: "ping"}, &testv1.EchoResponse{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := eb.userCall(ctx, procEcho, req, res, nil); err != nil {
			b.Fatal(err)
		}
	}
}
