package runtime_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herd-go/herd/runtime"
)

// logging returns an interceptor that logs every call on either side: the
// procedure, the side, the peer, the metadata the handler received and the
// outcome.
func logging(log *slog.Logger) runtime.Interceptor {
	return runtime.UnaryInterceptorFunc(func(next runtime.UnaryFunc) runtime.UnaryFunc {
		return func(ctx context.Context, req *runtime.Request) (proto.Message, error) {
			res, err := next(ctx, req)
			attrs := []any{"procedure", req.Spec.Procedure, "client", req.Spec.IsClient, "one_way", req.Spec.OneWay}
			if req.Peer.WorkerID != 0 {
				attrs = append(attrs, "worker", req.Peer.WorkerID)
			}
			if id := runtime.MetadataFromContext(ctx).Get("request-id"); id != "" {
				attrs = append(attrs, "request_id", id)
			}
			if err != nil {
				log.WarnContext(ctx, "call failed", append(attrs, "code", runtime.CodeOf(err).String())...)
			} else {
				log.InfoContext(ctx, "call", attrs...)
			}
			return res, err
		}
	})
}

// A logging interceptor on both sides of a call, and metadata from the
// caller to the handler. The calls here go through a Mux, in-process; on a
// Primary, a Worker or a Self they are configured the same way
// (runtime.NewPrimary(runtime.WithInterceptors(...)) wraps every call to
// and from every worker).
func ExampleWithInterceptors() {
	// Log without time, so that the output compares.
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	const procedure = "/example.v1.GreetService/Greet"

	mux := runtime.NewMux()
	greet := runtime.NewUnaryHandler(procedure, func(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		if req.GetValue() == "" {
			return nil, runtime.Errorf(runtime.CodeInvalidArgument, "no name")
		}
		return wrapperspb.String("hello, " + req.GetValue()), nil
	}, runtime.WithInterceptors(logging(log)))
	if err := mux.Register(greet); err != nil {
		panic(err)
	}

	client := runtime.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](mux, procedure,
		runtime.WithInterceptors(logging(log)))
	ctx := runtime.AppendToOutgoingContext(context.Background(), "request-id", "r-1")
	res, err := client.Call(ctx, wrapperspb.String("herd"))
	fmt.Println(res.GetValue(), err)
	_, err = client.Call(ctx, wrapperspb.String(""))
	fmt.Println(runtime.CodeOf(err))
	// Output:
	// level=INFO msg=call procedure=/example.v1.GreetService/Greet client=false one_way=false request_id=r-1
	// level=INFO msg=call procedure=/example.v1.GreetService/Greet client=true one_way=false
	// hello, herd <nil>
	// level=WARN msg="call failed" procedure=/example.v1.GreetService/Greet client=false one_way=false request_id=r-1 code=invalid_argument
	// level=WARN msg="call failed" procedure=/example.v1.GreetService/Greet client=true one_way=false code=invalid_argument
	// invalid_argument
}
