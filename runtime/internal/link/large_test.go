//go:build linux || darwin

package link

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// keeper is a handler that keeps what a frame's handler may keep: the
// payload itself (not a copy, and Kept set) when the envelope is Owned, a
// copy otherwise.
// It also records the read buffer's size, read on the reader goroutine.
type keeper struct {
	l      atomic.Pointer[Link] // set before any frame arrives
	mu     sync.Mutex
	frames []kept
	notify chan struct{}
}

type kept struct {
	callID  uint64
	owned   bool // the frame came in a buffer of its own
	payload []byte
	files   []*os.File
	rbuf    int
}

func newKeeper() *keeper { return &keeper{notify: make(chan struct{}, 1024)} }

func (k *keeper) handle(env *wire.Envelope, files []*os.File) error {
	f := kept{callID: env.CallID, owned: env.Owned != nil, payload: env.Payload, files: append([]*os.File(nil), files...)}
	if env.Owned != nil {
		env.Kept = true // the payload itself is kept
	} else {
		f.payload = bytes.Clone(env.Payload)
	}
	if l := k.l.Load(); l != nil {
		f.rbuf = len(l.rbuf) // the reader's own state, read on its goroutine
	}
	k.mu.Lock()
	k.frames = append(k.frames, f)
	k.mu.Unlock()
	k.notify <- struct{}{}
	return nil
}

func (k *keeper) wait(t *testing.T, n int) []kept {
	t.Helper()
	ctx := testContext(t)
	for range n {
		select {
		case <-k.notify:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %d frames", n)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]kept(nil), k.frames...)
}

func (k *keeper) closeFiles() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, f := range k.frames {
		for _, file := range f.files {
			file.Close()
		}
	}
}

// pattern returns n bytes that differ from frame to frame (seed).
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// TestLargeFrameOwnBuffer: a frame larger than the read buffer arrives in a
// buffer of its own, marked Owned, that the link never reuses once the
// handler sets Kept: payloads kept without a copy are intact after later
// frames, large and small, and the read buffer keeps its size.
func TestLargeFrameOwnBuffer(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	const initial = 4096
	k := newKeeper()
	fa, fb, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	a := startLink(t, fa, discard, WithReadBufferSize(initial))
	// k.l is set before the peer sends anything.
	k.l.Store(startLink(t, fb, k.handle, WithReadBufferSize(initial)))
	sizes := []int{10, 300 << 10, 20, initial - 20, initial + 1, 1 << 20, 5, 1 << 20}
	var sent [][]byte
	for i, n := range sizes {
		p := pattern(n, byte(i))
		sent = append(sent, p)
		if err := a.SendBytes(ctx, &wire.Header{CallID: uint64(i + 1)}, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	got := k.wait(t, len(sizes))
	for i, f := range got {
		if f.callID != uint64(i+1) || !bytes.Equal(f.payload, sent[i]) {
			t.Fatalf("frame %d (call %d, %d bytes): payload differs from the %d bytes sent", i, f.callID, len(f.payload), len(sent[i]))
		}
		large := sizes[i]+16 > initial // the envelope's own bytes: under 16
		if f.owned != large {
			t.Fatalf("frame %d of %d bytes: Owned = %v, want %v", i, sizes[i], f.owned, large)
		}
		if f.rbuf != initial && !f.owned {
			t.Fatalf("frame %d: read buffer is %d bytes, want %d", i, f.rbuf, initial)
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i].owned && got[i-1].owned && &got[i].payload[0] == &got[i-1].payload[0] {
			t.Fatal("two large frames share a buffer")
		}
	}
}

// TestLargeFramePartialReads: a large frame written a few bytes at a time,
// its length prefix split, the next frame's first bytes in the same write
// as its last ones, arrives whole, and the frame after it too.
func TestLargeFramePartialReads(t *testing.T) {
	checkLeaks(t)
	k := newKeeper()
	l, raw := rawPair(t, k.handle, WithReadBufferSize(1024))
	big := pattern(100<<10, 3)
	f1, _ := wire.AppendFrameBytes(nil, &wire.Header{CallID: 1}, big, 0)
	f2, _ := wire.AppendFrameBytes(nil, &wire.Header{CallID: 2}, []byte("after"), 0)
	f3, _ := wire.AppendFrameBytes(nil, &wire.Header{CallID: 3}, pattern(3000, 9), 0)
	stream := append(append(append([]byte(nil), f1...), f2...), f3...)
	// Chunks: 1 byte, 2 bytes (prefix still split), then growing pieces,
	// and one piece that spans the end of f1 and the start of f2.
	cuts := []int{1, 3, 5, 700, 4096, 50 << 10, len(f1) - 3, len(f1) + 2, len(f1) + len(f2) + 10, len(stream)}
	prev := 0
	for _, c := range cuts {
		rawWrite(t, raw, stream[prev:c])
		prev = c
	}
	got := k.wait(t, 3)
	if !bytes.Equal(got[0].payload, big) || !got[0].owned {
		t.Fatalf("large frame: %d bytes, owned %v; want %d bytes, owned", len(got[0].payload), got[0].owned, len(big))
	}
	if string(got[1].payload) != "after" || got[1].owned {
		t.Fatalf("frame after it: %q, owned %v", got[1].payload, got[1].owned)
	}
	if !bytes.Equal(got[2].payload, pattern(3000, 9)) || !got[2].owned {
		t.Fatal("third frame corrupted")
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestLargeFrameWithFDs: descriptors sent with a large frame's first byte,
// and with the small frames just before and just after it, reach the
// frames that claim them.
func TestLargeFrameWithFDs(t *testing.T) {
	checkLeaks(t)
	k := newKeeper()
	t.Cleanup(k.closeFiles)
	_, raw := rawPair(t, k.handle, WithReadBufferSize(1024))
	r1, w1 := pipe(t)
	r2, w2 := pipe(t)
	r3, w3 := pipe(t)
	big := pattern(200<<10, 1)
	before, _ := wire.AppendFrameBytes(nil, &wire.Header{CallID: 1, FDCount: 1}, []byte("before"), 0)
	large, _ := wire.AppendFrameBytes(nil, &wire.Header{CallID: 2, FDCount: 1}, big, 0)
	after, _ := wire.AppendFrameBytes(nil, &wire.Header{CallID: 3, FDCount: 1}, []byte("after"), 0)
	// The small frame and the start of the large one in one sendmsg: the
	// large frame's descriptor rides on its own first byte, in a second one.
	rawSendFDs(t, raw, before, int(w1.Fd()))
	rawSendFDs(t, raw, large, int(w2.Fd()))
	rawSendFDs(t, raw, after, int(w3.Fd()))
	got := k.wait(t, 3)
	for i, w := range []*os.File{w1, w2, w3} {
		w.Close()
		if len(got[i].files) != 1 {
			t.Fatalf("frame %d: %d files, want 1", i+1, len(got[i].files))
		}
	}
	if !bytes.Equal(got[1].payload, big) || !got[1].owned {
		t.Fatal("large frame corrupted")
	}
	// Each received file is the write end of its own pipe.
	for i, r := range []*os.File{r1, r2, r3} {
		if _, err := got[i].files[0].Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		got[i].files[0].Close()
		got[i].files = nil
		b := make([]byte, 2)
		if n, err := r.Read(b); err != nil || n != 1 || b[0] != byte(i) {
			t.Fatalf("pipe %d read %v, %v", i+1, b[:n], err)
		}
	}
}

// TestFDsInsideLargeFrame: descriptors that arrive with bytes in the middle
// of a large frame are claimed by no frame: the link ends with
// ErrUnclaimedFDs and closes them, and the handler never sees the frame.
func TestFDsInsideLargeFrame(t *testing.T) {
	checkLeaks(t)
	k := newKeeper()
	l, raw := rawPair(t, k.handle, WithReadBufferSize(1024))
	r, w := pipe(t)
	large, _ := wire.AppendFrameBytes(nil, &wire.Header{CallID: 1}, pattern(64<<10, 2), 0)
	rawWrite(t, raw, large[:10<<10])
	rawSendFDs(t, raw, large[10<<10:], int(w.Fd()))
	w.Close()
	waitDone(t, l)
	if err := l.Err(); !errors.Is(err, ErrUnclaimedFDs) {
		t.Fatalf("Err() = %v, want ErrUnclaimedFDs", err)
	}
	if k.mu.Lock(); len(k.frames) != 0 {
		t.Fatal("the handler saw the frame")
	}
	k.mu.Unlock()
	expectEOF(t, r)
}

// TestLargeFrameOverLimit: a large frame's announced length is checked
// against WithMaxFrameSize before its buffer is made.
func TestLargeFrameOverLimit(t *testing.T) {
	checkLeaks(t)
	k := newKeeper()
	l, raw := rawPair(t, k.handle, WithReadBufferSize(1024), WithMaxFrameSize(8<<10))
	rawWrite(t, raw, be32(8<<10+1))
	waitDone(t, l)
	if err := l.Err(); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("Err() = %v, want ErrFrameTooLarge", err)
	}
}

// TestLargeBufferReusedUnlessKept: the buffer of a large frame whose
// handler did not keep it serves the next large frame (no allocation per
// frame), one that was kept does not, and the spare is given back after
// shrinkAfter reads without a large frame.
func TestLargeBufferReusedUnlessKept(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	const initial = 4096
	type seen struct {
		data  *byte
		large bool // the link held a spare large buffer during the call
	}
	var self atomic.Pointer[Link]
	got := make(chan seen, 1000)
	var keep atomic.Bool
	fa, fb, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	a := startLink(t, fa, discard, WithReadBufferSize(initial))
	self.Store(startLink(t, fb, func(env *wire.Envelope, _ []*os.File) error {
		env.Kept = env.Owned != nil && keep.Load()
		got <- seen{data: &env.Payload[0], large: self.Load().lspare.held()}
		return nil
	}, WithReadBufferSize(initial)))
	send := func(n int) seen {
		t.Helper()
		if err := a.SendBytes(ctx, &wire.Header{CallID: 1}, pattern(n, 1), nil); err != nil {
			t.Fatal(err)
		}
		return <-got
	}
	first := send(100 << 10)
	if second := send(90 << 10); second.data != first.data {
		t.Fatal("a large frame not kept: the next one got another buffer")
	}
	keep.Store(true)
	third := send(100 << 10) // reuses, and is kept
	if fourth := send(100 << 10); fourth.data == third.data {
		t.Fatal("a kept large frame's buffer was reused")
	}
	keep.Store(false)
	send(100 << 10) // not kept: the spare
	var last seen
	for range shrinkAfter + 1 {
		last = send(10)
	}
	if last.large {
		t.Fatalf("a spare large buffer is still held after %d small reads", shrinkAfter+1)
	}
}
