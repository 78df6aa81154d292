//go:build linux || darwin

package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	"github.com/herd-go/herd/runtime/internal/link"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// These tests put an endpoint on one end of a socketpair and hold the other
// end raw, so that they can write any frame, or any bytes, at it: no
// processes, no generated stubs (they import this package).

const (
	dispatchWait     = 30 * time.Second
	dispatchMaxFrame = 64 << 10

	procEcho  = "/herd.test.v1.TestService/Echo"
	procPanic = "/herd.test.v1.TestService/Panic"
	procFail  = "/herd.test.v1.TestService/Fail"
	procBlock = "/herd.test.v1.TestService/Block"
)

// errorEvent is one call of the endpoint's onError.
type errorEvent struct {
	code      Code
	procedure string
	msg       string
}

// rawPeer is an endpoint under test and the raw other end of its link.
type rawPeer struct {
	t       testing.TB
	ep      *endpoint
	raw     *os.File
	frames  chan decoded // frames the endpoint wrote, until it closed
	readErr error        // why reading stopped; set before frames closes

	mu      sync.Mutex
	events  []errorEvent
	evSig   chan struct{}
	credits []*herdv1.CreditRequest // Credit frames the endpoint wrote

	block chan struct{} // procBlock's handler returns once it is closed
}

// decoded is a frame read from the endpoint, copied out of the read buffer.
type decoded struct {
	replyTo   uint64
	callID    uint64
	procedure string
	hasError  bool
	code      Code
	message   string
	payload   []byte
}

func newRawPeer(t testing.TB, extra ...*Handler) *rawPeer {
	return newRawPeerConfig(t, nil, extra...)
}

// newRawPeerWith is newRawPeer with the endpoint's configuration changed
// by configure.
func newRawPeerWith(t testing.TB, configure func(*endpointConfig)) *rawPeer {
	t.Helper()
	return newRawPeerConfig(t, configure)
}

// newRawPeerConfig is newRawPeer with the endpoint's configuration changed
// by cfgFn.
func newRawPeerConfig(t testing.TB, cfgFn func(*endpointConfig), extra ...*Handler) *rawPeer {
	t.Helper()
	a, b, err := link.Pair()
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{t: t, raw: b, frames: make(chan decoded, 64), evSig: make(chan struct{}, 1), block: make(chan struct{})}
	local := NewMux()
	err = local.Register(
		NewUnaryHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
			closeFiles(FilesFromContext(ctx))
			return &testv1.EchoResponse{Message: "echo:" + req.GetMessage()}, nil
		}),
		NewUnaryHandler(procPanic, func(ctx context.Context, req *testv1.PanicRequest) (*testv1.PanicResponse, error) {
			closeFiles(FilesFromContext(ctx))
			panic(req.GetMessage())
		}),
		NewUnaryHandler(procFail, func(ctx context.Context, req *testv1.FailRequest) (*testv1.FailResponse, error) {
			closeFiles(FilesFromContext(ctx))
			return nil, Errorf(Code(req.GetCode()), "%s", req.GetMessage())
		}),
		NewUnaryHandler(procBlock, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
			closeFiles(FilesFromContext(ctx))
			<-p.block
			return &testv1.EchoResponse{}, nil
		}),
	)
	if err == nil && len(extra) > 0 {
		err = local.Register(extra...)
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg := endpointConfig{maxFrame: dispatchMaxFrame, mailboxCap: 4, logger: slog.New(slog.DiscardHandler)}
	if cfgFn != nil {
		cfgFn(&cfg)
	}
	cfg = cfg.withDefaults()
	p.ep = newEndpoint(cfg, NewMux(), local, nil, context.Background(), p.onError)
	if err := p.ep.start(a); err != nil {
		b.Close()
		t.Fatal(err)
	}
	go p.read()
	return p
}

func (p *rawPeer) onError(code Code, procedure string, err error) {
	p.mu.Lock()
	p.events = append(p.events, errorEvent{code, procedure, err.Error()})
	p.mu.Unlock()
	select {
	case p.evSig <- struct{}{}:
	default:
	}
}

// read decodes the endpoint's frames until the socket ends.
func (p *rawPeer) read() {
	defer close(p.frames)
	var buf []byte
	tmp := make([]byte, 64<<10)
	for {
		n, err := p.raw.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for {
			var env wire.Envelope
			m, derr := wire.Decode(buf, dispatchMaxFrame, &env)
			if derr != nil {
				p.readErr = fmt.Errorf("endpoint wrote a bad frame: %w", derr)
				return
			}
			if m == 0 {
				break
			}
			if string(env.Procedure) == controlCreditProcedure {
				// Flow control: kept aside; the tests write within
				// the window the endpoint grants first.
				c := &herdv1.CreditRequest{}
				if err := proto.Unmarshal(env.Payload, c); err != nil {
					p.readErr = fmt.Errorf("endpoint wrote a bad credit frame: %w", err)
					return
				}
				p.mu.Lock()
				p.credits = append(p.credits, c)
				p.mu.Unlock()
				select {
				case p.evSig <- struct{}{}:
				default:
				}
				buf = buf[m:]
				continue
			}
			p.frames <- decoded{
				replyTo: env.ReplyTo, callID: env.CallID, procedure: string(env.Procedure),
				hasError: env.HasError, code: Code(env.ErrorCode), message: string(env.ErrorMessage),
				payload: bytes.Clone(env.Payload),
			}
			buf = buf[m:]
		}
		if err != nil {
			if err != io.EOF {
				p.readErr = err
			}
			return
		}
	}
}

// write writes b, with fds attached to its first byte.
func (p *rawPeer) write(b []byte, fds []int) error {
	fd := int(p.raw.Fd())
	if len(fds) > 0 && len(b) > 0 {
		n, err := unix.SendmsgN(fd, b, unix.UnixRights(fds...), nil, 0)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	_, err := p.raw.Write(b)
	return err
}

func (p *rawPeer) frame(h wire.Header, payload []byte) []byte {
	p.t.Helper()
	b, err := wire.AppendFrameBytes(nil, &h, payload, dispatchMaxFrame)
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// next returns the next frame the endpoint wrote.
func (p *rawPeer) next() decoded {
	p.t.Helper()
	select {
	case d, ok := <-p.frames:
		if !ok {
			p.t.Fatalf("the endpoint closed the link: %v; read: %v", p.ep.link.Err(), p.readErr)
		}
		return d
	case <-time.After(dispatchWait):
		p.t.Fatal("no frame from the endpoint")
	}
	return decoded{}
}

// event waits for the i-th error event.
func (p *rawPeer) event(i int) errorEvent {
	p.t.Helper()
	timer := time.NewTimer(dispatchWait)
	defer timer.Stop()
	for {
		p.mu.Lock()
		if len(p.events) > i {
			ev := p.events[i]
			p.mu.Unlock()
			return ev
		}
		p.mu.Unlock()
		select {
		case <-p.evSig:
		case <-timer.C:
			p.t.Fatalf("no error event %d", i)
		}
	}
}

func (p *rawPeer) eventCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

// echo makes a call that must be answered, and checks the answer.
func (p *rawPeer) echo(id uint64, msg string) {
	p.t.Helper()
	if err := p.write(p.frame(wire.Header{Procedure: procEcho, CallID: id}, marshal(p.t, &testv1.EchoRequest{Message: msg})), nil); err != nil {
		p.t.Fatal(err)
	}
	d := p.next()
	res := &testv1.EchoResponse{}
	if d.replyTo != id || d.hasError || proto.Unmarshal(d.payload, res) != nil || res.GetMessage() != "echo:"+msg {
		p.t.Fatalf("echo %d: got %+v", id, d)
	}
}

// close ends the link from the raw side and waits for the endpoint.
func (p *rawPeer) close() error {
	unix.Shutdown(int(p.raw.Fd()), unix.SHUT_WR)
	for range p.frames {
	}
	select {
	case <-p.ep.link.Done():
	case <-time.After(dispatchWait):
		p.t.Fatalf("the endpoint's link did not end")
	}
	<-p.ep.closed
	p.raw.Close()
	return p.ep.link.Err()
}

// TestDispatchBadInput: an unknown procedure, an undecodable payload, a
// reply to a call never made, a cancel of a call never made and a
// panicking handler are each answered (or dropped) with the right code and
// an error event, and none of them ends the link.
func TestDispatchBadInput(t *testing.T) {
	base := herdtest.Take()
	p := newRawPeer(t)
	p.echo(1, "first")
	ev := 0
	expectEvent := func(code Code, procedure, contains string) {
		t.Helper()
		e := p.event(ev)
		ev++
		if e.code != code || e.procedure != procedure || !strings.Contains(e.msg, contains) {
			t.Errorf("error event %+v, want code %v procedure %q message containing %q", e, code, procedure, contains)
		}
	}
	expectReply := func(id uint64, code Code, contains string) {
		t.Helper()
		d := p.next()
		if d.replyTo != id || !d.hasError || d.code != code || !strings.Contains(d.message, contains) {
			t.Errorf("reply %+v, want reply to %d with code %v, message containing %q", d, id, code, contains)
		}
	}

	// Unknown procedure, request/response: unimplemented, and an event.
	p.write(p.frame(wire.Header{Procedure: "/nope.v1.NopeService/Nope", CallID: 2}, []byte("whatever")), nil)
	expectReply(2, CodeUnimplemented, "/nope.v1.NopeService/Nope")
	expectEvent(CodeUnimplemented, "/nope.v1.NopeService/Nope", "not registered")

	// Unknown procedure, fire-and-forget: no reply, an event, and a
	// Rejected notice that tells the sender.
	p.write(p.frame(wire.Header{Procedure: "/nope.v1.NopeService/Quiet"}, nil), nil)
	expectEvent(CodeUnimplemented, "/nope.v1.NopeService/Quiet", "not registered")
	expectNotice := func(code Code, procedure string) {
		t.Helper()
		d := p.next()
		n := &herdv1.RejectedRequest{}
		if d.procedure != controlRejectedProcedure || d.callID != 0 || d.replyTo != 0 || proto.Unmarshal(d.payload, n) != nil ||
			Code(n.GetCode()) != code || n.GetProcedure() != procedure {
			t.Errorf("frame %+v (notice %v), want a Rejected notice of %s with code %v", d, n, procedure, code)
		}
	}
	expectNotice(CodeUnimplemented, "/nope.v1.NopeService/Quiet")
	// The same, undecodable: invalid_argument.
	p.write(p.frame(wire.Header{Procedure: procEcho}, []byte{0x0a, 0x05, 'a'}), nil)
	expectEvent(CodeInvalidArgument, procEcho, "decode")
	expectNotice(CodeInvalidArgument, procEcho)
	// A notice itself is never answered with a notice (the raw side serves
	// no ControlService, so the endpoint under test rejects it).
	p.write(p.frame(wire.Header{Procedure: controlRejectedProcedure, Flags: wire.FlagSystem}, nil), nil)
	expectEvent(CodeUnimplemented, controlRejectedProcedure, "not registered")

	// Undecodable payload: a string field with invalid UTF-8.
	bad := []byte{0x0a, 0x02, 0xff, 0xfe}
	p.write(p.frame(wire.Header{Procedure: procEcho, CallID: 3}, bad), nil)
	expectReply(3, CodeInvalidArgument, "decode")
	expectEvent(CodeInvalidArgument, procEcho, "decode")
	// Truncated payload.
	p.write(p.frame(wire.Header{Procedure: procEcho, CallID: 4}, []byte{0x0a, 0x05, 'a'}), nil)
	expectReply(4, CodeInvalidArgument, "decode")
	expectEvent(CodeInvalidArgument, procEcho, "decode")

	// A reply to a call never made is dropped, with an event.
	p.write(p.frame(wire.Header{ReplyTo: 1 << 40}, marshal(t, &testv1.EchoResponse{})), nil)
	expectEvent(CodeInvalidArgument, "", "unknown call")
	// A cancel of a call never made is ignored.
	p.write(p.frame(wire.Header{ReplyTo: 1 << 41, Flags: wire.FlagCancel}, nil), nil)

	// A panicking handler: internal to the caller; fire-and-forget, an event.
	p.write(p.frame(wire.Header{Procedure: procPanic, CallID: 5}, marshal(t, &testv1.PanicRequest{Message: "kaboom"})), nil)
	expectReply(5, CodeInternal, "kaboom")
	p.write(p.frame(wire.Header{Procedure: procPanic}, marshal(t, &testv1.PanicRequest{Message: "quiet kaboom"})), nil)
	expectEvent(CodeInternal, procPanic, "quiet kaboom")

	// A failing fire-and-forget handler: an event with its code.
	p.write(p.frame(wire.Header{Procedure: procFail}, marshal(t, &testv1.FailRequest{Code: 5, Message: "gone"})), nil)
	expectEvent(CodeNotFound, procFail, "gone")

	// Descriptors sent with an unknown procedure are closed, not leaked
	// (the leak check below counts them).
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	p.write(p.frame(wire.Header{Procedure: "/nope.v1.NopeService/Files", CallID: 6, FDCount: 1}, nil), []int{int(devnull.Fd())})
	devnull.Close()
	expectReply(6, CodeUnimplemented, "not registered")
	expectEvent(CodeUnimplemented, "/nope.v1.NopeService/Files", "not registered")

	// The link survived all of it, and nothing else was reported.
	p.echo(7, "last")
	if n := p.eventCount(); n != ev {
		t.Errorf("%d error events, want %d: %+v", n, ev, p.events)
	}
	if err := p.ep.link.Err(); err != nil {
		t.Errorf("link ended: %v", err)
	}
	if err := p.close(); !errors.Is(err, link.ErrPeerClosed) {
		t.Errorf("link ended with %v, want ErrPeerClosed", err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// TestDispatchMalformedFrameEndsLink: bytes that are not an envelope end the
// link with a typed error; an oversize length prefix with
// ErrFrameTooLarge, before anything is allocated.
func TestDispatchMalformedFrameEndsLink(t *testing.T) {
	base := herdtest.Take()
	for _, tt := range []struct {
		name  string
		bytes []byte
		check func(error) bool
	}{
		{"oversize", binary.BigEndian.AppendUint32(nil, dispatchMaxFrame+1), func(err error) bool { return errors.Is(err, ErrFrameTooLarge) }},
		{"bad tag", []byte{0, 0, 0, 2, 0xff, 0xff}, func(err error) bool { var pe *ProtocolError; return errors.As(err, &pe) }},
		{"missing descriptors", func() []byte {
			b, _ := wire.AppendFrameBytes(nil, &wire.Header{Procedure: procEcho, FDCount: 2}, nil, 0)
			return b
		}(), func(err error) bool { var pe *ProtocolError; return errors.As(err, &pe) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newRawPeer(t)
			p.echo(1, "before")
			p.write(tt.bytes, nil)
			for range p.frames {
			}
			if err := p.close(); !tt.check(err) {
				t.Errorf("link ended with %v (%T)", err, err)
			}
		})
	}
	herdtest.Check(t, base, dispatchWait)
}

// FuzzDispatch writes one frame built from the fuzzer's envelope fields
// (with nfds descriptors attached), preceded or followed by raw garbage,
// into an endpoint, then an echo call, then closes its end. The endpoint
// must not panic; a well-formed frame must leave the link working (the echo
// is answered and the link ends only with the close); anything else must
// end it with a typed error; no descriptor or goroutine may leak. Seeds
// live in testdata/fuzz/FuzzDispatch.
func FuzzDispatch(f *testing.F) {
	f.Fuzz(func(t *testing.T, procedure string, callID, replyTo uint64, flags, fdCount uint32, nfds uint8, deadline int64, payload, garbage []byte, garbageFirst bool) {
		base := herdtest.Take()
		p := newRawPeer(t)

		var fds []int
		for range nfds % 3 {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			fd, err := unix.Dup(int(r.Fd()))
			r.Close()
			w.Close()
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, fd)
		}
		h := wire.Header{Procedure: procedure, CallID: callID, ReplyTo: replyTo, Flags: flags, FDCount: fdCount % 4, DeadlineUnixNano: deadline}
		frame, ferr := wire.AppendFrameBytes(nil, &h, payload, dispatchMaxFrame)
		// Descriptors the frame does not claim are a protocol error too,
		// and so is a control request larger than maxSystemFrame, however
		// well-formed.
		bigControl := h.Flags&wire.FlagCancel == 0 && h.ReplyTo == 0 && h.Flags&wire.FlagSystem != 0 && len(frame) > maxSystemFrame
		wellFormed := ferr == nil && len(garbage) == 0 && int(h.FDCount) == len(fds) && !bigControl
		var in []byte
		if garbageFirst {
			in = append(in, garbage...)
		}
		if ferr == nil {
			in = append(in, frame...)
		}
		if !garbageFirst {
			in = append(in, garbage...)
		}
		// The echo that shows whether the link is still in step.
		echoID := uint64(1<<63 + 7)
		if echoID == callID {
			echoID++
		}
		echo, _ := wire.AppendFrameBytes(nil, &wire.Header{Procedure: procEcho, CallID: echoID}, marshal(t, &testv1.EchoRequest{Message: "sentinel"}), 0)
		in = append(in, echo...)
		werr := p.write(in, fds)
		for _, fd := range fds {
			unix.Close(fd)
		}

		if wellFormed {
			if werr != nil {
				t.Fatalf("writing a well-formed frame: %v", werr)
			}
			// Every frame up to the echo's answer must be a reply.
			for {
				d := p.next()
				if d.replyTo == echoID {
					if d.hasError {
						t.Fatalf("echo failed: %+v", d)
					}
					break
				}
				if d.replyTo == 0 && d.procedure == controlRejectedProcedure && callID == 0 {
					continue // the notice of a rejected fire-and-forget frame
				}
				if d.replyTo == 0 || d.replyTo != callID {
					t.Fatalf("unexpected frame %+v", d)
				}
			}
		}
		err := p.close()
		var pe *ProtocolError
		switch {
		case wellFormed && !errors.Is(err, link.ErrPeerClosed):
			t.Fatalf("well-formed input ended the link with %v (%T)", err, err)
		case errors.Is(err, ErrLinkClosed), errors.Is(err, ErrFrameTooLarge), errors.As(err, &pe):
		default:
			t.Fatalf("link ended with %v (%T), want a typed error", err, err)
		}
		if p.readErr != nil {
			t.Fatalf("reading the endpoint: %v", p.readErr)
		}
		p.mu.Lock()
		for _, e := range p.events {
			// Fail's events carry whatever code the fuzzer asked for.
			if e.procedure != procFail && (e.code == 0 || int(e.code) >= len(codeNames)) || !utf8.ValidString(e.msg) {
				t.Errorf("error event %+v", e)
			}
		}
		p.mu.Unlock()
		herdtest.Check(t, base, dispatchWait)
	})
}

// TestLookupCacheSeesRegistrations: the reader's one-entry lookup cache
// never hides a handler registered after it was filled, in any of the
// three muxes, with their precedence (control, local, shared).
func TestLookupCacheSeesRegistrations(t *testing.T) {
	control, local, shared := NewMux(), NewMux(), NewMux()
	ep := newEndpoint(endpointConfig{}.withDefaults(), control, local, shared, context.Background(), func(Code, string, error) {})
	mk := func() *Handler {
		return NewUnaryHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) { return nil, nil })
	}
	check := func(want *Handler, wantControl bool) {
		t.Helper()
		for range 2 { // a miss, then a hit
			if h, c := ep.lookup(&wire.Envelope{Procedure: []byte(procEcho)}); h != want || c != wantControl {
				t.Fatalf("lookup = %p, %t; want %p, %t", h, c, want, wantControl)
			}
		}
	}
	check(nil, false)
	hs, hl, hc := mk(), mk(), mk()
	shared.Register(hs)
	check(hs, false)
	local.Register(hl)
	check(hl, false)
	control.Register(hc)
	check(hc, true)
	if h, _ := ep.lookup(&wire.Envelope{Procedure: []byte("/other.v1.S/M")}); h != nil {
		t.Fatalf("lookup of an unknown procedure = %p", h)
	}
	check(hc, true)
}

// TestRejectedNoticesBounded: a flood of fire-and-forget frames that cannot
// be dispatched is reported on the receiving side for every frame, but the
// notices written back to the sender are bounded (rejectBurst at once,
// rejectRate a second), and each names at most rejectMaxProcedure bytes of
// a procedure, cut at a rune boundary.
func TestRejectedNoticesBounded(t *testing.T) {
	base := herdtest.Take()
	const flood = 1000
	// This peer writes without waiting for credit: the endpoint grants it
	// room for the whole flood.
	p := newRawPeerWith(t, func(c *endpointConfig) { c.mailboxCap = flood + 1 })
	long := "/" + strings.Repeat("é/", 400) // too long, and cut mid-rune at the limit
	start := time.Now()
	go func() {
		for i := range flood {
			proc := "/nope.v1.NopeService/Flood"
			if i == 0 {
				proc = long
			}
			if err := p.write(p.frame(wire.Header{Procedure: proc}, nil), nil); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	p.event(flood - 1) // every frame was reported here
	elapsed := time.Since(start)
	// An echo: every notice written before its reply comes before it.
	if err := p.write(p.frame(wire.Header{Procedure: procEcho, CallID: 1}, marshal(t, &testv1.EchoRequest{})), nil); err != nil {
		t.Fatal(err)
	}
	notices := 0
	for {
		d := p.next()
		if d.replyTo == 1 {
			break
		}
		n := &herdv1.RejectedRequest{}
		if d.procedure != controlRejectedProcedure || proto.Unmarshal(d.payload, n) != nil {
			t.Fatalf("unexpected frame %+v", d)
		}
		if notices == 0 && (len(n.GetProcedure()) > rejectMaxProcedure || !utf8.ValidString(n.GetProcedure()) || !strings.HasPrefix(n.GetProcedure(), "/é/é/")) {
			t.Errorf("first notice names %q, want the procedure cut to %d bytes of valid UTF-8", n.GetProcedure(), rejectMaxProcedure)
		}
		notices++
	}
	limit := rejectBurst + int(elapsed.Seconds()*rejectRate) + 1
	if notices < rejectBurst || notices > limit {
		t.Errorf("%d notices for %d rejected frames in %v; want %d to %d", notices, flood, elapsed, rejectBurst, limit)
	}
	if err := p.close(); !errors.Is(err, link.ErrPeerClosed) {
		t.Errorf("link ended with %v", err)
	}
	herdtest.Check(t, base, dispatchWait)
}
