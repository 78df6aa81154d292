//go:build linux || darwin

package link

import (
	"bytes"
	"os"
	"testing"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// held reports whether a spare is held.
func (s *spareBuffer) held() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b != nil
}

// ownedFrame is what a keeping handler saw of one frame.
type ownedFrame struct {
	owned   []byte // env.Owned
	payload []byte // env.Payload, kept without a copy when owned
}

// keepAll is a handler that keeps every large frame (Envelope.Kept) and
// hands the frames to a channel.
func keepAll(got chan<- ownedFrame) Handler {
	return func(env *wire.Envelope, _ []*os.File) error {
		f := ownedFrame{owned: env.Owned, payload: env.Payload}
		if env.Owned != nil {
			env.Kept = true
		} else {
			f.payload = bytes.Clone(env.Payload)
		}
		got <- f
		return nil
	}
}

// TestRecycleKeptBuffer: a kept buffer is never written again while it is
// held, however many large frames follow; once given back (Recycle) the next
// large frame is read into it.
func TestRecycleKeptBuffer(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	got := make(chan ownedFrame, 16)
	a, b := linkPair(t, discard, keepAll(got), WithReadBufferSize(4096))
	send := func(n int, seed byte) ownedFrame {
		t.Helper()
		if err := a.SendBytes(ctx, &wire.Header{CallID: 1}, pattern(n, seed), nil); err != nil {
			t.Fatal(err)
		}
		return <-got
	}
	first := send(100<<10, 1)
	if first.owned == nil {
		t.Fatal("a 100 KiB frame did not come in a buffer of its own")
	}
	for i := range 5 {
		f := send(100<<10, byte(i+2))
		if &f.owned[0] == &first.owned[0] {
			t.Fatalf("frame %d was read into a kept buffer that was not given back", i+2)
		}
	}
	if !bytes.Equal(first.payload, pattern(100<<10, 1)) {
		t.Fatal("a kept payload, not given back, changed")
	}
	if b.lspare.held() {
		t.Fatal("the link holds a spare though every large frame was kept")
	}
	b.Recycle(first.owned)
	next := send(90<<10, 9)
	if &next.owned[0] != &first.owned[0] {
		t.Fatal("a buffer given back was not reused by the next large frame")
	}
	if !bytes.Equal(next.payload, pattern(90<<10, 9)) {
		t.Fatal("the frame read into a recycled buffer is wrong")
	}
}

// TestRecycleBound: however many buffers are given back, the link holds
// one spare, the largest; a spare too small for a frame is not used.
func TestRecycleBound(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	got := make(chan ownedFrame, 16)
	a, b := linkPair(t, discard, keepAll(got), WithReadBufferSize(4096))
	bufs := [][]byte{make([]byte, 50<<10), make([]byte, 200<<10), make([]byte, 100<<10)}
	for _, buf := range bufs {
		b.Recycle(buf)
	}
	b.lspare.mu.Lock()
	spare := b.lspare.b
	b.lspare.mu.Unlock()
	if &spare[0] != &bufs[1][0] {
		t.Fatalf("the spare is a %d-byte buffer, want the largest given back (%d)", cap(spare), cap(bufs[1]))
	}
	if err := a.SendBytes(ctx, &wire.Header{CallID: 1}, pattern(300<<10, 1), nil); err != nil {
		t.Fatal(err)
	}
	f := <-got
	if &f.owned[0] == &bufs[1][0] {
		t.Fatal("a 300 KiB frame was read into a 200 KiB spare")
	}
	if !bytes.Equal(f.payload, pattern(300<<10, 1)) {
		t.Fatal("wrong payload")
	}
	b.Recycle(nil) // nothing to give: ignored
	if b.lspare.held() {
		t.Fatal("a nil buffer became the spare")
	}
	a.Close()
	waitDone(t, b)
	b.Recycle(f.owned) // after the end: harmless
}
