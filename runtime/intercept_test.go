//go:build unix

package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// mdString renders metadata as "k=v,k=v" in key order.
func mdString(md runtime.Metadata) string {
	var kv []string
	for k, v := range md {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func peerString(p runtime.Peer) string {
	if p.Primary {
		return "primary"
	}
	return fmt.Sprint(p.WorkerID)
}

// stampEcho appends to an Echo response, on the handling side, what the
// handler's side saw: " [side md=... peer=...]" and what extra returns.
func stampEcho(ctx context.Context, side string, req *runtime.Request, res proto.Message, extra string) {
	if r, ok := res.(*testv1.EchoResponse); ok && !req.Spec.IsClient {
		r.Message += fmt.Sprintf(" [%s md=%s peer=%s%s]", side, mdString(runtime.MetadataFromContext(ctx)), peerString(req.Peer), extra)
	}
}

// workerInterceptor is the link-wide interceptor of a "typed" worker run
// with HERD_TEST_INTERCEPT=1: its calls to the primary carry "from"; it
// refuses calls whose metadata has "worker-deny"; it stamps Echo responses.
func workerInterceptor(svc *testService) runtime.Interceptor {
	return runtime.UnaryInterceptorFunc(func(next runtime.UnaryFunc) runtime.UnaryFunc {
		return func(ctx context.Context, req *runtime.Request) (proto.Message, error) {
			if req.Spec.IsClient {
				return next(runtime.AppendToOutgoingContext(ctx, "from", fmt.Sprint("worker ", svc.self.ID())), req)
			}
			if v := runtime.MetadataFromContext(ctx).Get("worker-deny"); v != "" {
				return nil, runtime.Errorf(runtime.CodePermissionDenied, "worker refuses: %s", v)
			}
			res, err := next(ctx, req)
			st := svc.self.Stats()
			extra := ""
			if st.FramesReceived > 0 && st.BytesReceived > 0 && st.MailboxCapacity > 0 {
				extra = " selfstats=ok"
			}
			stampEcho(ctx, "worker", req, res, extra)
			return res, err
		}
	})
}

// TestTypedInterceptorsAcrossProcesses: link-wide interceptors on the
// Primary and on a worker's Self see each other's calls with the right
// peer; metadata travels both ways; a worker's interceptor refuses a call
// with a typed error; both ends expose their link's counters.
func TestTypedInterceptorsAcrossProcesses(t *testing.T) {
	var seen []string // the primary's interceptor, client side; only the test goroutine calls
	rec := runtime.UnaryInterceptorFunc(func(next runtime.UnaryFunc) runtime.UnaryFunc {
		return func(ctx context.Context, req *runtime.Request) (proto.Message, error) {
			res, err := next(ctx, req)
			if req.Spec.IsClient {
				seen = append(seen, fmt.Sprintf("%s peer=%s oneway=%t code=%v", req.Spec.Procedure, peerString(req.Peer), req.Spec.OneWay, errCode(err)))
			}
			stampEcho(ctx, "primary", req, res, "")
			return res, err
		}
	})
	tc := newTyped(t, runtime.WithInterceptors(rec))
	w, c := tc.fork("HERD_TEST_INTERCEPT=1")
	ctx := runtime.AppendToOutgoingContext(context.Background(), "k", "v")

	res, err := c.Echo(ctx, &testv1.EchoRequest{Message: "hi"})
	want := fmt.Sprintf("worker %d:hi [worker md=k=v peer=primary selfstats=ok]", w.ID())
	if err != nil || res.GetMessage() != want {
		t.Fatalf("echo: %q, %v; want %q", res.GetMessage(), err, want)
	}
	// The worker's handler calls the primary with its own context: the
	// caller's metadata does not follow by itself, the worker's
	// interceptor adds "from".
	res, err = c.Echo(ctx, &testv1.EchoRequest{Message: "relay", Relay: true})
	want = fmt.Sprintf("primary:relay [primary md=from=worker %d peer=%d] [worker md=k=v peer=primary selfstats=ok]", w.ID(), w.ID())
	if err != nil || res.GetMessage() != want {
		t.Fatalf("relay: %q, %v; want %q", res.GetMessage(), err, want)
	}
	_, err = c.Echo(runtime.AppendToOutgoingContext(ctx, "worker-deny", "no"), &testv1.EchoRequest{Message: "x"})
	wantCode(t, "refused by the worker", err, runtime.CodePermissionDenied)
	if err == nil || !strings.Contains(err.Error(), "worker refuses: no") {
		t.Fatalf("refused: %v", err)
	}
	if err := c.SendReport(ctx, &testv1.ReportRequest{Message: "one way"}); err != nil {
		t.Fatal(err)
	}
	wantSeen := []string{
		fmt.Sprintf("/herd.test.v1.TestService/Echo peer=%d oneway=false code=ok", w.ID()),
		fmt.Sprintf("/herd.test.v1.TestService/Echo peer=%d oneway=false code=ok", w.ID()),
		fmt.Sprintf("/herd.test.v1.TestService/Echo peer=%d oneway=false code=permission_denied", w.ID()),
		fmt.Sprintf("/herd.test.v1.TestService/Report peer=%d oneway=true code=ok", w.ID()),
	}
	if strings.Join(seen, "\n") != strings.Join(wantSeen, "\n") {
		t.Fatalf("primary's interceptor saw:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(wantSeen, "\n"))
	}

	// Too much metadata fails before anything is sent (the error wraps
	// ErrTooMuchMetadata: only a local error can).
	var kv []string
	for i := range runtime.MaxMetadataEntries + 1 {
		kv = append(kv, fmt.Sprint("k", i), "v")
	}
	before := w.Stats()
	_, err = c.Echo(context.Background(), &testv1.EchoRequest{}, runtime.WithMetadata(kv...))
	if !errors.Is(err, runtime.ErrTooMuchMetadata) {
		t.Fatalf("too much metadata: %v", err)
	}
	wantCode(t, "too much metadata", err, runtime.CodeResourceExhausted)
	if before.FramesSent < 4 || before.FramesReceived < 4 || before.BytesSent == 0 || before.BytesReceived == 0 || before.MailboxCapacity == 0 || before.Writes == 0 {
		t.Fatalf("stats %+v", before)
	}
	echoOK := fmt.Sprintf("worker %d:ok [worker md= peer=primary selfstats=ok]", w.ID())
	if res, err := testv1herd.NewTestServiceClient(w).Echo(context.Background(), &testv1.EchoRequest{Message: "ok"}); err != nil || res.GetMessage() != echoOK {
		t.Fatalf("echo after: %q, %v", res.GetMessage(), err)
	}
}

func errCode(err error) string {
	if err == nil {
		return "ok"
	}
	return runtime.CodeOf(err).String()
}
