//go:build linux || darwin

package link

import (
	"context"
	"errors"
	"testing"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestSendSyncWrittenBeforeReturn: once SendSync returns, the frame is in
// the kernel's hands: closing the link at once (as a process that dies
// would) still delivers it. Both paths: written on the caller's goroutine
// when the link is idle, and waited for behind a write the peer holds up.
func TestSendSyncWrittenBeforeReturn(t *testing.T) {
	checkLeaks(t)
	t.Run("idle", func(t *testing.T) {
		c := newCollector(false)
		a, _ := linkPair(t, discard, c.handle)
		h := wire.Header{Procedure: "/t.T/Sync", CallID: 1}
		if err := a.SendSync(&h, benchPayload); err != nil {
			t.Fatal(err)
		}
		if got := a.Stats().FramesSent; got != 1 {
			t.Errorf("%d frames sent when SendSync returned, want 1", got)
		}
		a.Close()
		if r := c.wait(t, 1)[0]; r.hdr.Procedure != "/t.T/Sync" {
			t.Errorf("got %+v", r.hdr)
		}
	})
	t.Run("behind a held write", func(t *testing.T) {
		c := newCollector(true)
		a, _ := linkPair(t, discard, c.handle, WithMaxFrameSize(4<<20))
		ctx := context.Background()
		// The reader holds the first frame; the second is larger than the
		// socket buffers, so the writer stops half way.
		h0, p0 := seqFrame(1, 0, 10)
		h1, p1 := seqFrame(1, 1, 3<<20)
		for _, f := range []struct {
			h wire.Header
			p []byte
		}{{h0, p0}, {h1, p1}} {
			if err := a.SendBytes(ctx, &f.h, f.p, nil); err != nil {
				t.Fatal(err)
			}
		}
		c.wait(t, 1)
		done := make(chan error, 1)
		go func() {
			h := wire.Header{Procedure: "/t.T/Sync", CallID: 2}
			done <- a.SendSync(&h, benchPayload)
		}()
		close(c.gate)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		a.Close()
		frames := c.wait(t, 3)
		if frames[2].hdr.Procedure != "/t.T/Sync" {
			t.Errorf("third frame %+v", frames[2].hdr)
		}
	})
	t.Run("link closed while waiting", func(t *testing.T) {
		c := newCollector(true)
		a, _ := linkPair(t, discard, c.handle, WithMaxFrameSize(4<<20))
		h0, p0 := seqFrame(1, 0, 10)
		h1, p1 := seqFrame(1, 1, 3<<20)
		a.SendBytes(context.Background(), &h0, p0, nil)
		a.SendBytes(context.Background(), &h1, p1, nil)
		c.wait(t, 1)
		done := make(chan error, 1)
		go func() {
			h := wire.Header{Procedure: "/t.T/Sync", CallID: 2}
			done <- a.SendSync(&h, benchPayload)
		}()
		a.Close()
		if err := <-done; !errors.Is(err, ErrLinkClosed) {
			t.Errorf("SendSync on a link closed under it: %v", err)
		}
		close(c.gate)
	})
}
