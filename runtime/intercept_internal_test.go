//go:build linux || darwin

package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	"github.com/herd-go/herd/runtime/internal/link"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// These tests run two endpoints over a socketpair in this process: ea
// plays the primary's end of worker 7's link, eb the worker's end.

// trail records what interceptors and handlers saw, in order.
type trail struct {
	mu    sync.Mutex
	lines []string
	sig   chan struct{} // signalled on every add
}

func newTrail() *trail { return &trail{sig: make(chan struct{}, 1)} }

func (tr *trail) add(format string, args ...any) {
	tr.mu.Lock()
	tr.lines = append(tr.lines, fmt.Sprintf(format, args...))
	tr.mu.Unlock()
	select {
	case tr.sig <- struct{}{}:
	default:
	}
}

func (tr *trail) take() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	l := tr.lines
	tr.lines = nil
	return l
}

// recording returns an interceptor that adds "<name> in <spec> <peer>
// <request>" and "<name> out <response> <code>" lines to tr.
func recording(tr *trail, name string) Interceptor {
	return UnaryInterceptorFunc(func(next UnaryFunc) UnaryFunc {
		return func(ctx context.Context, req *Request) (proto.Message, error) {
			tr.add("%s in %s client=%t oneway=%t peer=%d/%t req=%q", name, req.Spec.Procedure, req.Spec.IsClient, req.Spec.OneWay,
				req.Peer.WorkerID, req.Peer.Primary, req.Msg.(*testv1.EchoRequest).GetMessage())
			res, err := next(ctx, req)
			msg := "<nil>"
			if res != nil {
				msg = fmt.Sprintf("%q", res.(*testv1.EchoResponse).GetMessage())
			}
			code := "ok"
			if err != nil {
				code = CodeOf(err).String()
			}
			tr.add("%s out res=%s err=%s", name, msg, code)
			return res, err
		}
	})
}

// sortedMetadata renders md as "k=v,k=v" in key order.
func sortedMetadata(md Metadata) string {
	var kv []string
	for k, v := range md {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// interceptPair starts ea (the primary's end, peer worker 7) serving local
// with link-wide interceptors icA, and eb (the worker's end) with icB.
func interceptPair(t *testing.T, local *Mux, icA, icB []Interceptor) (ea, eb *endpoint) {
	t.Helper()
	base := herdtest.Take()
	fa, fb, err := link.Pair()
	if err != nil {
		t.Fatal(err)
	}
	cfg := endpointConfig{logger: slog.New(slog.DiscardHandler), mailboxCap: 8}.withDefaults()
	noErr := func(Code, string, error) {}
	cfg.interceptors = icA
	ea = newEndpoint(cfg, NewMux(), local, nil, context.Background(), noErr)
	ea.peer = Peer{WorkerID: 7}
	cfg.interceptors = icB
	eb = newEndpoint(cfg, NewMux(), NewMux(), nil, context.Background(), noErr)
	eb.peer = Peer{Primary: true}
	if err := ea.start(fa); err != nil {
		t.Fatal(err)
	}
	if err := eb.start(fb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ea.link.Close()
		eb.link.Close()
		<-ea.closed
		<-eb.closed
		herdtest.Check(t, base, 10*time.Second)
	})
	return ea, eb
}

// echoMux serves Echo on a Mux: the answer names the metadata the handler
// saw and whether its context has a deadline; every call is added to tr.
func echoMux(t *testing.T, tr *trail, opts ...HandlerOption) *Mux {
	t.Helper()
	m := NewMux()
	err := m.Register(NewUnaryHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		_, deadline := ctx.Deadline()
		tr.add("handler %q md=%s deadline=%t outgoing=%d", req.GetMessage(), sortedMetadata(MetadataFromContext(ctx)), deadline, len(OutgoingMetadataFromContext(ctx)))
		if req.GetMessage() == "fail" {
			return nil, Errorf(CodeNotFound, "no such %s", req.GetMessage())
		}
		return &testv1.EchoResponse{Message: "echo:" + req.GetMessage()}, nil
	}, opts...))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestInterceptorsOrderAndSpec: link-wide, client and call interceptors
// run on the calling side, link-wide and handler interceptors on the
// handling side, outermost first, each seeing the procedure, the side, the
// peer, the request, the response and the error.
func TestInterceptorsOrderAndSpec(t *testing.T) {
	tr := newTrail()
	local := echoMux(t, tr, WithInterceptors(recording(tr, "handler")))
	_, eb := interceptPair(t, local, []Interceptor{recording(tr, "link-a")}, []Interceptor{recording(tr, "link-b")})
	c := NewClient[testv1.EchoRequest, testv1.EchoResponse](&selfConn{eb}, procEcho, WithInterceptors(recording(tr, "client")))
	ctx := context.Background()
	res, err := c.Call(ctx, &testv1.EchoRequest{Message: "hi"}, WithInterceptors(recording(tr, "call")))
	if err != nil || res.GetMessage() != "echo:hi" {
		t.Fatalf("Call: %v, %v", res, err)
	}
	want := []string{
		`link-b in /herd.test.v1.TestService/Echo client=true oneway=false peer=0/true req="hi"`,
		`client in /herd.test.v1.TestService/Echo client=true oneway=false peer=0/true req="hi"`,
		`call in /herd.test.v1.TestService/Echo client=true oneway=false peer=0/true req="hi"`,
		`link-a in /herd.test.v1.TestService/Echo client=false oneway=false peer=7/false req="hi"`,
		`handler in /herd.test.v1.TestService/Echo client=false oneway=false peer=7/false req="hi"`,
		`handler "hi" md= deadline=false outgoing=0`,
		`handler out res="echo:hi" err=ok`,
		`link-a out res="echo:hi" err=ok`,
		`call out res="echo:hi" err=ok`,
		`client out res="echo:hi" err=ok`,
		`link-b out res="echo:hi" err=ok`,
	}
	if got := tr.take(); !slices.Equal(got, want) {
		t.Fatalf("trail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// An error travels out through every interceptor.
	if _, err := c.Call(ctx, &testv1.EchoRequest{Message: "fail"}); CodeOf(err) != CodeNotFound {
		t.Fatalf("fail: %v", err)
	}
	got := tr.take()
	if len(got) != 9 || got[len(got)-1] != `link-b out res=<nil> err=not_found` || got[5] != `handler out res=<nil> err=not_found` {
		t.Fatalf("trail of a failing call:\n%s", strings.Join(got, "\n"))
	}

	// A fire-and-forget message: OneWay on both sides, no response.
	if err := c.Send(ctx, &testv1.EchoRequest{Message: "one way"}); err != nil {
		t.Fatal(err)
	}
	got = waitTrail(t, tr, 9)
	for _, want := range []string{
		`link-b in /herd.test.v1.TestService/Echo client=true oneway=true peer=0/true req="one way"`,
		`link-b out res=<nil> err=ok`,
		`link-a in /herd.test.v1.TestService/Echo client=false oneway=true peer=7/false req="one way"`,
		`handler out res="echo:one way" err=ok`,
	} {
		if !slices.Contains(got, want) {
			t.Fatalf("one-way trail lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
}

// selfConn is the worker's ClientConn over a bare endpoint, as Self is.
type selfConn struct{ ep *endpoint }

func (c *selfConn) Call(ctx context.Context, procedure string, req, res proto.Message, opts ...CallOption) error {
	return c.ep.userCall(ctx, procedure, req, res, opts)
}

func (c *selfConn) Send(ctx context.Context, procedure string, req proto.Message, opts ...CallOption) error {
	return c.ep.userSend(ctx, procedure, req, opts)
}

// waitTrail waits until tr holds n lines and takes them.
func waitTrail(t *testing.T, tr *trail, n int) []string {
	t.Helper()
	timer := time.NewTimer(dispatchWait)
	defer timer.Stop()
	for {
		tr.mu.Lock()
		l := len(tr.lines)
		tr.mu.Unlock()
		if l >= n {
			return tr.take()
		}
		select {
		case <-tr.sig:
		case <-timer.C:
			t.Fatalf("trail has %d lines, want %d: %q", l, n, tr.take())
		}
	}
}

// TestMetadataTravels: the context's metadata, a call's WithMetadata and
// what a client interceptor appends all reach the handler's context, with
// the deadline; the handler's own outgoing metadata is empty (it is not
// propagated by itself).
func TestMetadataTravels(t *testing.T) {
	tr := newTrail()
	stamp := UnaryInterceptorFunc(func(next UnaryFunc) UnaryFunc {
		return func(ctx context.Context, req *Request) (proto.Message, error) {
			return next(AppendToOutgoingContext(ctx, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), req)
		}
	})
	_, eb := interceptPair(t, echoMux(t, tr), nil, []Interceptor{stamp})
	ctx, cancel := context.WithTimeout(AppendToOutgoingContext(context.Background(), "user", "ann", "k", "first"), time.Hour)
	defer cancel()
	ctx = AppendToOutgoingContext(ctx, "k", "second")
	if got := sortedMetadata(OutgoingMetadataFromContext(ctx)); got != "k=second,user=ann" {
		t.Fatalf("OutgoingMetadataFromContext = %s", got)
	}
	res := &testv1.EchoResponse{}
	if err := eb.userCall(ctx, procEcho, &testv1.EchoRequest{Message: "md"}, res, []CallOption{WithMetadata("call", "ä☃")}); err != nil {
		t.Fatal(err)
	}
	want := `handler "md" md=call=ä☃,k=second,traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01,user=ann deadline=true outgoing=0`
	if got := tr.take(); len(got) != 1 || got[0] != want {
		t.Fatalf("handler saw %q\nwant %q", got, want)
	}
	// Fire-and-forget messages carry metadata too.
	if err := eb.userSend(AppendToOutgoingContext(context.Background(), "one", "way"), procEcho, &testv1.EchoRequest{Message: "send"}, nil); err != nil {
		t.Fatal(err)
	}
	want = `handler "send" md=one=way,traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 deadline=false outgoing=0`
	if got := waitTrail(t, tr, 1); got[0] != want {
		t.Fatalf("handler saw %q\nwant %q", got, want)
	}
	// A call without metadata of its own has only the interceptor's.
	if err := eb.userCall(context.Background(), procEcho, &testv1.EchoRequest{Message: "bare"}, res, nil); err != nil {
		t.Fatal(err)
	}
	if got := tr.take(); len(got) != 1 || !strings.Contains(got[0], `"bare" md=traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 deadline=false`) {
		t.Fatalf("handler saw %q", got)
	}
}

// TestInterceptorShortCircuit: a client interceptor that answers without
// calling next sends nothing; a handler interceptor that refuses keeps the
// handler from running and its *Error reaches the caller; a client
// interceptor may answer from a cache, with a message of the response type
// only.
func TestInterceptorShortCircuit(t *testing.T) {
	tr := newTrail()
	deny := UnaryInterceptorFunc(func(next UnaryFunc) UnaryFunc {
		return func(ctx context.Context, req *Request) (proto.Message, error) {
			if MetadataFromContext(ctx).Get("token") != "secret" {
				return nil, Errorf(CodePermissionDenied, "no token for %s", req.Spec.Procedure)
			}
			return next(ctx, req)
		}
	})
	ea, eb := interceptPair(t, echoMux(t, tr, WithInterceptors(deny)), nil, nil)
	ctx := context.Background()
	res := &testv1.EchoResponse{}

	err := eb.userCall(ctx, procEcho, &testv1.EchoRequest{Message: "x"}, res, nil)
	var e *Error
	if CodeOf(err) != CodePermissionDenied || !errors.As(err, &e) || !strings.Contains(e.Message(), "no token") {
		t.Fatalf("without token: %v", err)
	}
	if err := eb.userCall(ctx, procEcho, &testv1.EchoRequest{Message: "x"}, res, []CallOption{WithMetadata("token", "secret")}); err != nil || res.GetMessage() != "echo:x" {
		t.Fatalf("with token: %v, %v", res, err)
	}
	if got := tr.take(); len(got) != 1 {
		t.Fatalf("the handler ran %d times, want once: %q", len(got), got)
	}

	// ea counts a frame before handling it, and eb sends ea nothing but
	// requests (replies earn no credit): once a later call is answered,
	// ea's count is exact.
	before := ea.stats().FramesReceived
	refuse := WithInterceptors(UnaryInterceptorFunc(func(next UnaryFunc) UnaryFunc {
		return func(ctx context.Context, req *Request) (proto.Message, error) {
			return nil, NewError(CodeUnavailable, errors.New("circuit open"))
		}
	}))
	if err := eb.userCall(ctx, procEcho, &testv1.EchoRequest{Message: "y"}, res, []CallOption{refuse}); CodeOf(err) != CodeUnavailable {
		t.Fatalf("refused call: %v", err)
	}
	if err := eb.userSend(ctx, procEcho, &testv1.EchoRequest{Message: "y"}, []CallOption{refuse}); CodeOf(err) != CodeUnavailable {
		t.Fatalf("refused send: %v", err)
	}
	cached := WithInterceptors(UnaryInterceptorFunc(func(next UnaryFunc) UnaryFunc {
		return func(ctx context.Context, req *Request) (proto.Message, error) {
			return &testv1.EchoResponse{Message: "cached", WorkerId: 3}, nil
		}
	}))
	res = &testv1.EchoResponse{Message: "stale"}
	if err := eb.userCall(ctx, procEcho, &testv1.EchoRequest{Message: "z"}, res, []CallOption{cached}); err != nil || res.GetMessage() != "cached" || res.GetWorkerId() != 3 {
		t.Fatalf("cached: %v, %v", res, err)
	}
	wrong := WithInterceptors(UnaryInterceptorFunc(func(next UnaryFunc) UnaryFunc {
		return func(ctx context.Context, req *Request) (proto.Message, error) {
			return &testv1.EchoRequest{}, nil
		}
	}))
	if err := eb.userCall(ctx, procEcho, &testv1.EchoRequest{Message: "z"}, res, []CallOption{wrong}); CodeOf(err) != CodeInternal {
		t.Fatalf("response of the wrong type: %v", err)
	}
	if got := tr.take(); len(got) != 0 {
		t.Fatalf("the handler ran: %q", got)
	}
	if err := eb.userCall(ctx, procEcho, &testv1.EchoRequest{Message: "x"}, res, []CallOption{WithMetadata("token", "secret")}); err != nil {
		t.Fatal(err)
	}
	if after := ea.stats().FramesReceived; after != before+1 {
		t.Fatalf("refused calls reached the peer: %d frames, want 1", after-before)
	}
}

// TestMetadataBounds: a caller cannot send more than MaxMetadataEntries
// entries (nothing is sent), nor invalid UTF-8; a peer that sends more
// anyway gets CodeResourceExhausted without the handler running, and the
// link goes on.
func TestMetadataBounds(t *testing.T) {
	tr := newTrail()
	ea, eb := interceptPair(t, echoMux(t, tr), nil, nil)
	ctx := context.Background()
	var kv []string
	for i := range MaxMetadataEntries + 1 {
		kv = append(kv, fmt.Sprint("k", i), "v")
	}
	res := &testv1.EchoResponse{}
	if err := eb.userCall(ctx, procEcho, &testv1.EchoRequest{}, res, nil); err != nil {
		t.Fatal(err)
	}
	before := ea.stats().FramesReceived // exact: see TestInterceptorShortCircuit
	err := eb.userCall(AppendToOutgoingContext(ctx, kv...), procEcho, &testv1.EchoRequest{}, res, nil)
	if !errors.Is(err, ErrTooMuchMetadata) || CodeOf(err) != CodeResourceExhausted {
		t.Fatalf("too much metadata: %v", err)
	}
	if err := eb.userSend(ctx, procEcho, &testv1.EchoRequest{}, []CallOption{WithMetadata(kv...)}); !errors.Is(err, ErrTooMuchMetadata) {
		t.Fatalf("too much metadata on a send: %v", err)
	}
	if err := eb.userCall(ctx, procEcho, &testv1.EchoRequest{}, res, []CallOption{WithMetadata("k", "\xff")}); CodeOf(err) != CodeInvalidArgument {
		t.Fatalf("invalid UTF-8: %v", err)
	}
	// Exactly the limit is fine.
	if err := eb.userCall(AppendToOutgoingContext(ctx, kv[2:]...), procEcho, &testv1.EchoRequest{Message: "max"}, res, nil); err != nil {
		t.Fatal(err)
	}
	if got := tr.take(); len(got) != 2 || strings.Count(got[1], "=v") != MaxMetadataEntries {
		t.Fatalf("handler saw %q", got)
	}
	if after := ea.stats().FramesReceived; after != before+1 {
		t.Fatalf("refused calls reached the peer: %d frames, want 1", after-before)
	}

	// An untrusted peer that writes the frame itself.
	p := newRawPeer(t)
	h := wire.Header{Procedure: procEcho, CallID: 1, Metadata: kv}
	if err := p.write(p.frame(h, marshal(t, &testv1.EchoRequest{Message: "many"})), nil); err != nil {
		t.Fatal(err)
	}
	d := p.next()
	if d.replyTo != 1 || !d.hasError || d.code != CodeResourceExhausted || !strings.Contains(d.message, "too many metadata entries") {
		t.Fatalf("reply: %+v", d)
	}
	if ev := p.event(0); ev.code != CodeResourceExhausted || ev.procedure != procEcho {
		t.Fatalf("error event: %+v", ev)
	}
	p.echo(2, "still there")
	if err := p.close(); err != nil && !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
}

// TestLinkStats: both ends count the frames and bytes of calls, and report
// the mailbox's bound.
func TestLinkStats(t *testing.T) {
	tr := newTrail()
	ea, eb := interceptPair(t, echoMux(t, tr), nil, nil)
	if s := (*endpoint)(nil).stats(); s != (LinkStats{}) {
		t.Fatalf("stats before start: %+v", s)
	}
	const n = 5
	res := &testv1.EchoResponse{}
	for range n {
		if err := eb.userCall(context.Background(), procEcho, &testv1.EchoRequest{Message: "count"}, res, nil); err != nil {
			t.Fatal(err)
		}
	}
	if b := eb.stats(); b.MailboxCapacity != 8 || b.PendingCalls != 0 || b.MailboxUser != 0 || b.FramesSent < n {
		t.Fatalf("b %+v", b)
	}
	// Once both ends are done, b's sends are final (its requests, written
	// by the callers, and its credit grant) and a has read them all (b
	// closed after writing); b may have closed before reading a's last
	// frames (credit grants), and a's drainer may count a reply a moment
	// after the caller returned, so a's sends are compared with nothing.
	eb.link.Close()
	<-ea.closed
	<-eb.closed
	a, b := ea.stats(), eb.stats()
	if a.FramesReceived != b.FramesSent || b.FramesSent < n || b.FramesReceived < n {
		t.Fatalf("frames: a %+v, b %+v", a, b)
	}
	if a.BytesReceived != b.BytesSent || b.BytesSent == 0 || b.BytesReceived == 0 || a.BytesSent == 0 {
		t.Fatalf("bytes: a %+v, b %+v", a, b)
	}
	if b.Writes == 0 || a.Reads == 0 {
		t.Fatalf("b %+v", b)
	}
}

// TestMuxInterceptorsAndMetadata: in-process calls through a Mux run the
// call's and the handler's interceptors and move the metadata to the
// handler's side.
func TestMuxInterceptorsAndMetadata(t *testing.T) {
	tr := newTrail()
	m := echoMux(t, tr, WithInterceptors(recording(tr, "handler")))
	ctx := AppendToOutgoingContext(context.Background(), "k", "v")
	res := &testv1.EchoResponse{}
	if err := m.Call(ctx, procEcho, &testv1.EchoRequest{Message: "mux"}, res, WithInterceptors(recording(tr, "call")), WithMetadata("x", "y")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`call in /herd.test.v1.TestService/Echo client=true oneway=false peer=0/false req="mux"`,
		`handler in /herd.test.v1.TestService/Echo client=false oneway=false peer=0/false req="mux"`,
		`handler "mux" md=k=v,x=y deadline=false outgoing=0`,
		`handler out res="echo:mux" err=ok`,
		`call out res="echo:mux" err=ok`,
	}
	if got := tr.take(); !slices.Equal(got, want) {
		t.Fatalf("trail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := m.Send(ctx, procEcho, &testv1.EchoRequest{Message: "mux send"}, WithInterceptors(recording(tr, "call"))); err != nil {
		t.Fatal(err)
	}
	if got := tr.take(); len(got) != 5 || !strings.Contains(got[0], "oneway=true") || !strings.Contains(got[1], "oneway=true") || got[4] != `call out res=<nil> err=ok` {
		t.Fatalf("send trail:\n%s", strings.Join(got, "\n"))
	}
}

// TestInterceptorsSkipControl: link-wide interceptors do not see the
// runtime's own control traffic.
func TestInterceptorsSkipControl(t *testing.T) {
	tr := newTrail()
	seen := UnaryInterceptorFunc(func(next UnaryFunc) UnaryFunc {
		return func(ctx context.Context, req *Request) (proto.Message, error) {
			tr.add("saw %s client=%t", req.Spec.Procedure, req.Spec.IsClient)
			return next(ctx, req)
		}
	})
	ea, eb := interceptPair(t, NewMux(), []Interceptor{seen}, []Interceptor{seen})
	if err := ea.control.Register(NewUnaryHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		return &testv1.EchoResponse{Message: "control"}, nil
	})); err != nil {
		t.Fatal(err)
	}
	res := &testv1.EchoResponse{}
	if err := (controlConn{eb}).Call(context.Background(), procEcho, &testv1.EchoRequest{}, res); err != nil || res.GetMessage() != "control" {
		t.Fatalf("control call: %v, %v", res, err)
	}
	if got := tr.take(); len(got) != 0 {
		t.Fatalf("interceptors saw control traffic: %q", got)
	}
}
