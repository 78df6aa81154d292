//go:build linux || darwin

package link

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// readRawFrames reads n whole frames from the blocking descriptor fd.
func readRawFrames(t *testing.T, fd int, n int) []wire.Envelope {
	t.Helper()
	var buf []byte
	var envs []wire.Envelope
	chunk := make([]byte, 64<<10)
	for len(envs) < n {
		var env wire.Envelope
		if k, err := wire.Decode(buf, 0, &env); err != nil {
			t.Fatal(err)
		} else if k > 0 {
			env.Payload = bytes.Clone(env.Payload)
			envs = append(envs, env)
			buf = buf[k:]
			continue
		}
		k, err := unix.Read(fd, chunk)
		if err == unix.EINTR {
			continue
		}
		if err != nil || k == 0 {
			t.Fatalf("raw read: %d, %v", k, err)
		}
		buf = append(buf, chunk[:k]...)
	}
	if len(buf) != 0 {
		t.Fatalf("%d bytes after the frames", len(buf))
	}
	return envs
}

// setSendBuffer sets l's socket send buffer (Linux doubles it).
func setSendBuffer(t *testing.T, l *Link, n int) {
	t.Helper()
	var serr error
	if err := l.rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, n) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
}

// TestSendDirectLargeField: SendDirect of a message with a large bytes
// field, on an idle link, writes it with writev, the field straight from
// the message, and the peer decodes the same message.
func TestSendDirectLargeField(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	k := newKeeper()
	a, _ := linkPair(t, discard, k.handle)
	msg := &testv1.PayloadRequest{Data: pattern(300<<10, 5), ResponseSize: 11}
	before := a.Stats()
	if err := a.SendDirectSplit(ctx, &wire.Header{CallID: 1}, msg); err != nil {
		t.Fatal(err)
	}
	got := k.wait(t, 1)[0]
	var m testv1.PayloadRequest
	if err := proto.Unmarshal(got.payload, &m); err != nil || !proto.Equal(&m, msg) {
		t.Fatalf("peer decoded another message (%v)", err)
	}
	st := a.Stats()
	if st.FramesSent-before.FramesSent != 1 {
		t.Fatalf("%d frames counted sent, want 1", st.FramesSent-before.FramesSent)
	}
}

// TestSendDirectPartialWritev: when the socket takes only part of a split
// frame, SendDirect copies the rest for the writer before it returns: the
// caller may change its message at once, the peer still gets what was
// sent, and a frame sent next arrives after it.
func TestSendDirectPartialWritev(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	l, raw := rawPair(t, discard)
	setSendBuffer(t, l, 16<<10)
	data := pattern(1<<20, 7)
	msg := &testv1.PayloadRequest{Data: bytes.Clone(data)}
	before := l.Stats().Writes
	if err := l.SendDirectSplit(ctx, &wire.Header{CallID: 1}, msg); err != nil {
		t.Fatal(err)
	}
	if l.Stats().BytesSent >= uint64(len(data)) {
		t.Fatal("the socket took the whole frame: the test needs a partial writev")
	}
	if l.Stats().Writes == before {
		t.Fatal("SendDirect wrote nothing itself")
	}
	// The caller reuses its buffer as soon as SendDirect returns.
	for i := range msg.Data {
		msg.Data[i] = 0xEE
	}
	if err := l.SendDirectSplit(ctx, &wire.Header{CallID: 2}, &testv1.PayloadRequest{ResponseSize: 2}); err != nil {
		t.Fatal(err)
	}
	envs := readRawFrames(t, raw, 2)
	var m testv1.PayloadRequest
	if err := proto.Unmarshal(envs[0].Payload, &m); err != nil || envs[0].CallID != 1 || !bytes.Equal(m.Data, data) {
		t.Fatalf("first frame: call %d, %d bytes, %v; want call 1 with the data as sent", envs[0].CallID, len(m.Data), err)
	}
	if envs[1].CallID != 2 {
		t.Fatalf("second frame is call %d", envs[1].CallID)
	}
	poll(t, "both frames counted sent", func() bool { return l.Stats().FramesSent == 2 })
}

// TestSendDirectLargeFieldQueued: behind a frame still queued, a large
// field is copied into the queue as usual, and frames keep their order.
func TestSendDirectLargeFieldQueued(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	l, raw := rawPair(t, discard)
	setSendBuffer(t, l, 16<<10)
	first := &testv1.PayloadRequest{Data: pattern(200<<10, 1)}
	second := &testv1.PayloadRequest{Data: pattern(200<<10, 2)}
	want := []*testv1.PayloadRequest{proto.Clone(first).(*testv1.PayloadRequest), proto.Clone(second).(*testv1.PayloadRequest)}
	if err := l.SendDirectSplit(ctx, &wire.Header{CallID: 1}, first); err != nil {
		t.Fatal(err)
	}
	// The first frame's rest is the writer's (the socket is full): this
	// one is queued behind it.
	if err := l.SendDirectSplit(ctx, &wire.Header{CallID: 2}, second); err != nil {
		t.Fatal(err)
	}
	clear(first.Data)
	clear(second.Data)
	envs := readRawFrames(t, raw, 2)
	for i, env := range envs {
		var m testv1.PayloadRequest
		if err := proto.Unmarshal(env.Payload, &m); err != nil || env.CallID != uint64(i+1) || !proto.Equal(&m, want[i]) {
			t.Fatalf("frame %d: call %d, %v; want call %d as sent", i, env.CallID, err, i+1)
		}
	}
}

// TestSendDirectWritevPeerGone: a writev to a peer that stopped reading
// (shutdown SHUT_RD: the link's reader sees no end, its writes get EPIPE)
// ends the link with ErrPeerClosed; SendDirect itself returns nil, as Send
// does for a frame the link ends under.
func TestSendDirectWritevPeerGone(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	l, raw := rawPair(t, discard)
	if err := unix.Shutdown(raw, unix.SHUT_RD); err != nil {
		t.Fatal(err)
	}
	if err := l.SendDirectSplit(ctx, &wire.Header{CallID: 1}, &testv1.PayloadRequest{Data: make([]byte, 256<<10)}); err != nil {
		t.Fatalf("SendDirect = %v, want nil", err)
	}
	waitDone(t, l)
	if err := l.Err(); !errors.Is(err, ErrPeerClosed) || !errors.Is(err, unix.EPIPE) {
		t.Fatalf("Err() = %v, want ErrPeerClosed from writev's EPIPE", err)
	}
}
