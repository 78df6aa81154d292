//go:build linux

package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	"github.com/herd-go/herd/runtime/internal/link"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// Tests of borrowed buffers (borrow.go): requests and responses whose large
// bytes fields share the link's buffer, the buffer's reuse once given back,
// and what is never reused.

const procPayload = "/herd.test.v1.TestService/Payload"

// borrowPattern is n bytes that differ with seed and position.
func borrowPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i) + byte(i>>8)*7
	}
	return b
}

// within reports whether p's first byte lies in buf's memory.
func within(p, buf []byte) bool {
	if len(p) == 0 || cap(buf) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	return at >= start && at < start+uintptr(cap(buf))
}

// seenRequest is what a Payload handler saw of one request.
type seenRequest struct {
	data *byte
	ok   bool // the data was the pattern its first byte announces
}

// payloadEcho returns a Payload handler that checks each request's data
// (borrowPattern of its own length, seeded by its first byte), reports it
// on seen, and echoes it, with opts.
func payloadEcho(seen chan<- seenRequest, opts ...HandlerOption) *Handler {
	return NewUnaryHandler(procPayload, func(ctx context.Context, req *testv1.PayloadRequest) (*testv1.PayloadResponse, error) {
		d := req.GetData()
		s := seenRequest{}
		if len(d) > 0 {
			s = seenRequest{data: &d[0], ok: bytes.Equal(d, borrowPattern(len(d), d[0]))}
		}
		seen <- s
		return &testv1.PayloadResponse{Data: d}, nil
	}, opts...)
}

// TestBorrowedRequestReused: a WithBorrowedRequests handler's large request
// shares the link's buffer, which is given back once the echo reply is
// written and then serves the next request; the replies are right. A
// default handler's requests own their bytes: a kept one never changes.
func TestBorrowedRequestReused(t *testing.T) {
	for _, borrowed := range []bool{true, false} {
		name := map[bool]string{true: "borrowed", false: "default"}[borrowed]
		t.Run(name, func(t *testing.T) {
			base := herdtest.Take()
			seen := make(chan seenRequest, 8)
			var opts []HandlerOption
			if borrowed {
				opts = append(opts, WithBorrowedRequests())
			}
			local := NewMux()
			if err := local.Register(payloadEcho(seen, opts...)); err != nil {
				t.Fatal(err)
			}
			_, eb := endpointPair(t, local)
			ctx := context.Background()
			var first *byte
			var kept []*testv1.PayloadResponse
			for i := range 4 {
				want := borrowPattern(1<<20, byte(i+1))
				res := &testv1.PayloadResponse{}
				if err := eb.userCall(ctx, procPayload, &testv1.PayloadRequest{Data: want}, res, nil); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(res.GetData(), want) {
					t.Fatalf("call %d: the echo is not the request", i)
				}
				kept = append(kept, res)
				s := <-seen
				if !s.ok {
					t.Fatalf("call %d: the handler saw a wrong request", i)
				}
				switch {
				case i == 0:
					first = s.data
				case borrowed && s.data != first:
					t.Fatalf("call %d: a borrowed request did not reuse the buffer given back", i)
				case !borrowed && s.data == first:
					t.Fatalf("call %d: a default request shares an earlier one's bytes", i)
				}
			}
			for i, res := range kept {
				if !bytes.Equal(res.GetData(), borrowPattern(1<<20, byte(i+1))) {
					t.Fatalf("response %d changed after later calls", i)
				}
			}
			eb.link.Close()
			<-eb.closed
			herdtest.Check(t, base, dispatchWait)
		})
	}
}

// TestBorrowedResponseLease: a response made WithBorrowedResponse shares
// the link's buffer until its Lease is released. A held buffer is never
// written again, however many large responses follow; a released one
// serves the next; a Lease reused before Release lets its first buffer go
// (never reused); small responses borrow nothing.
func TestBorrowedResponseLease(t *testing.T) {
	base := herdtest.Take()
	local := NewMux()
	// The callee answers with borrowPattern(ResponseSize, seed), the seed
	// being the request's one byte of data.
	err := local.Register(NewUnaryHandler(procPayload, func(ctx context.Context, req *testv1.PayloadRequest) (*testv1.PayloadResponse, error) {
		return &testv1.PayloadResponse{Data: borrowPattern(int(req.GetResponseSize()), req.GetData()[0])}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	_, eb := endpointPair(t, local)
	ctx := context.Background()
	call := func(seed byte, size int, lease *Lease) *testv1.PayloadResponse {
		t.Helper()
		var opts []CallOption
		if lease != nil {
			opts = append(opts, WithBorrowedResponse(lease))
		}
		res := &testv1.PayloadResponse{}
		if err := eb.userCall(ctx, procPayload, &testv1.PayloadRequest{Data: []byte{seed}, ResponseSize: uint64(size)}, res, opts); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(res.GetData(), borrowPattern(size, seed)) {
			t.Fatalf("response %d: wrong data", seed)
		}
		return res
	}
	intact := func(res *testv1.PayloadResponse, seed byte) {
		t.Helper()
		if !bytes.Equal(res.GetData(), borrowPattern(len(res.GetData()), seed)) {
			t.Fatalf("response %d changed while its buffer was held", seed)
		}
	}
	const size = 1 << 20
	var held, other Lease
	r1 := call(1, size, &held)
	if !held.Held() {
		t.Fatal("a 1 MiB response borrowed nothing")
	}
	r2 := call(2, size, &other)
	if &r2.GetData()[0] == &r1.GetData()[0] {
		t.Fatal("a response was read into a buffer still held")
	}
	other.Release()
	other.Release() // a second Release does nothing
	if other.Held() {
		t.Fatal("a released Lease still holds its buffer")
	}
	var third Lease
	r3 := call(3, size, &third)
	if &r3.GetData()[0] != &r2.GetData()[0] {
		t.Fatal("the next response did not reuse the buffer released")
	}
	intact(r1, 1)
	// Reused before Release: r3's buffer is let go, never given back.
	r4 := call(4, size, &third)
	third.Release() // gives back r4's buffer only
	r5 := call(5, size, nil)
	r6 := call(6, size, &other)
	if &r6.GetData()[0] == &r3.GetData()[0] {
		t.Fatal("the buffer of a Lease reused before Release was given back")
	}
	if &r5.GetData()[0] == &r4.GetData()[0] {
		t.Fatal("a default response shares the link's buffer")
	}
	intact(r1, 1)
	intact(r3, 3)
	var small Lease
	call(7, 100, &small)
	if small.Held() {
		t.Fatal("a small response borrowed a buffer")
	}
	held.Release()
	other.Release()
	eb.link.Close()
	<-eb.closed
	herdtest.Check(t, base, dispatchWait)
}

// rawLargePeer is an endpoint under test over a socketpair whose other end
// the test writes and reads itself, when it chooses: a reply can be left
// unread in the socket.
type rawLargePeer struct {
	ep  *endpoint
	raw *os.File
	buf []byte // read from raw, not yet decoded
}

func newRawLargePeer(t *testing.T, maxFrame int, handlers ...*Handler) *rawLargePeer {
	t.Helper()
	a, b, err := link.Pair()
	if err != nil {
		t.Fatal(err)
	}
	local := NewMux()
	if err := local.Register(handlers...); err != nil {
		t.Fatal(err)
	}
	cfg := endpointConfig{maxFrame: maxFrame, logger: slog.New(slog.DiscardHandler)}.withDefaults()
	p := &rawLargePeer{raw: b}
	p.ep = newEndpoint(cfg, NewMux(), local, nil, context.Background(), func(Code, string, error) {})
	if err := p.ep.start(a); err != nil {
		b.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.raw.Close()
		<-p.ep.closed
	})
	return p
}

// send writes a call of procPayload with req, on its own goroutine (a large
// frame is written while the endpoint reads it); the error comes on the
// channel.
func (p *rawLargePeer) send(t *testing.T, id uint64, payload []byte) <-chan error {
	t.Helper()
	b, err := wire.AppendFrameBytes(nil, &wire.Header{Procedure: procPayload, CallID: id}, payload, p.ep.maxFrame)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.raw.Write(b)
		done <- err
	}()
	return done
}

// reply reads frames until the reply to call id, skipping credit frames.
func (p *rawLargePeer) reply(t *testing.T, id uint64) wire.Envelope {
	t.Helper()
	tmp := make([]byte, 256<<10)
	for {
		var env wire.Envelope
		n, err := wire.Decode(p.buf, p.ep.maxFrame, &env)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			p.buf = p.buf[n:]
			if env.ReplyTo == 0 {
				continue // credit
			}
			if env.ReplyTo != id {
				t.Fatalf("reply to %d, want %d", env.ReplyTo, id)
			}
			return env
		}
		m, err := p.raw.Read(tmp)
		if err != nil {
			t.Fatalf("reading the endpoint's replies: %v", err)
		}
		p.buf = append(p.buf, tmp[:m]...)
	}
}

// receive waits for a value on ch.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(dispatchWait):
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

// TestBorrowedReplyWrittenFirst: the buffer of a borrowed request goes back
// to the link only once the echo reply that shares it is written, or what
// the socket did not take of it is copied. The peer does not read: a 4 MiB
// reply does not fit in the socket. The next request is then read into the
// buffer given back, and both replies still arrive intact.
func TestBorrowedReplyWrittenFirst(t *testing.T) {
	base := herdtest.Take()
	type givenBack struct {
		buf    []byte
		queued int // bytes the peer had to read as the buffer was given back
	}
	gave := make(chan givenBack, 4)
	var rawFD atomic.Int64 // the peer's end, set once the endpoint is up
	testHookGaveBack = func(buf []byte) {
		n, err := unix.IoctlGetInt(int(rawFD.Load()), unix.SIOCINQ)
		if err != nil {
			n = -1
		}
		gave <- givenBack{buf, n}
	}
	t.Cleanup(func() { testHookGaveBack = nil })
	seen := make(chan seenRequest, 4)
	p := newRawLargePeer(t, 16<<20, payloadEcho(seen, WithBorrowedRequests()))
	rawFD.Store(int64(p.raw.Fd()))
	const size = 4 << 20
	req := func(seed byte) []byte { return marshal(t, &testv1.PayloadRequest{Data: borrowPattern(size, seed)}) }

	w1 := p.send(t, 1, req(1))
	if s := receive(t, seen, "first request"); !s.ok {
		t.Fatal("the handler saw a wrong first request")
	}
	g := receive(t, gave, "buffer given back")
	if g.queued < 1<<20 {
		// The socket takes about 2 MiB of the 4 MiB reply at once.
		t.Fatalf("the buffer was given back with %d bytes of the reply sent, want the socket full", g.queued)
	}
	buf := g.buf
	if err := receive(t, w1, "first write"); err != nil {
		t.Fatal(err)
	}
	w2 := p.send(t, 2, req(2))
	s := receive(t, seen, "second request")
	if !s.ok {
		t.Fatal("the handler saw a wrong second request")
	}
	if !within(unsafe.Slice(s.data, 1), buf) {
		t.Fatal("the second request was not read into the buffer given back: the test proves nothing")
	}
	if err := receive(t, w2, "second write"); err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 2; id++ {
		env := p.reply(t, id)
		if env.HasError {
			t.Fatalf("reply %d: error %q", id, env.ErrorMessage)
		}
		res := &testv1.PayloadResponse{}
		if err := proto.Unmarshal(env.Payload, res); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(res.GetData(), borrowPattern(size, byte(id))) {
			t.Fatalf("reply %d was overwritten by a later request", id)
		}
	}
	receive(t, gave, "second buffer given back")
	p.raw.Close()
	<-p.ep.closed
	herdtest.Check(t, base, dispatchWait)
}

// TestBorrowedBadRequest: a large request that does not decode is refused
// with CodeInvalidArgument, its handler never runs, and its buffer, which
// the refused message may share, is never given back to the link.
func TestBorrowedBadRequest(t *testing.T) {
	base := herdtest.Take()
	gave := make(chan []byte, 4)
	testHookGaveBack = func(buf []byte) { gave <- buf }
	t.Cleanup(func() { testHookGaveBack = nil })
	seen := make(chan seenRequest, 4)
	p := newRawLargePeer(t, 16<<20, payloadEcho(seen, WithBorrowedRequests()))
	// A valid 200 KiB data field (aliased), then a truncated varint.
	bad := protowire.AppendTag(nil, 1, protowire.BytesType)
	bad = protowire.AppendBytes(bad, borrowPattern(200<<10, 1))
	bad = append(bad, 0x10, 0x80)
	if err := receive(t, p.send(t, 1, bad), "write"); err != nil {
		t.Fatal(err)
	}
	env := p.reply(t, 1)
	if !env.HasError || Code(env.ErrorCode) != CodeInvalidArgument {
		t.Fatalf("reply: error %v code %v, want invalid_argument", env.HasError, Code(env.ErrorCode))
	}
	select {
	case <-seen:
		t.Fatal("the handler ran on a request that does not decode")
	case <-gave:
		t.Fatal("the buffer of a refused request was given back")
	default:
	}
	p.raw.Close()
	<-p.ep.closed
	herdtest.Check(t, base, dispatchWait)
}

// TestBorrowedOversizeRefused: a borrowing handler changes nothing for a
// frame over the maximum: the link ends with ErrFrameTooLarge as soon as
// the length prefix is read, before any buffer is allocated for it.
func TestBorrowedOversizeRefused(t *testing.T) {
	base := herdtest.Take()
	seen := make(chan seenRequest, 1)
	p := newRawLargePeer(t, 1<<20, payloadEcho(seen, WithBorrowedRequests()))
	if _, err := p.raw.Write(binary.BigEndian.AppendUint32(nil, 1<<20+1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.ep.closed:
	case <-time.After(dispatchWait):
		t.Fatal("the link did not end")
	}
	if err := p.ep.link.Err(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("link error %v, want ErrFrameTooLarge", err)
	}
	if code, _ := p.ep.linkFailure(); code != CodeResourceExhausted {
		t.Fatalf("failure code %v, want resource_exhausted", code)
	}
	p.raw.Close()
	_, _ = io.Copy(io.Discard, p.raw)
	herdtest.Check(t, base, dispatchWait)
}
