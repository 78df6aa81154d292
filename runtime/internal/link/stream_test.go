//go:build linux || darwin

package link

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// Tests of stream.go: a sender that outpaces the writer writes its own
// batches, and its last frames never wait for a batch that does not come.

// wakeHold is a writer that, once woken for the first time, stops before it
// looks at the queue until release is closed (a writer that is behind),
// and whose waits the test can follow.
type wakeHold struct {
	entered, release chan struct{} // closed once it stopped; closed by the test
	waits, wakes     atomic.Int32  // times it started waiting, and was woken
}

// holdWake returns a wakeHold and the option that makes a link's writer
// one. Only the first link built with the option is held.
func holdWake() (*wakeHold, Option) {
	w := &wakeHold{entered: make(chan struct{}), release: make(chan struct{})}
	var owner atomic.Pointer[config]
	return w, optionFunc(func(c *config) {
		if !owner.CompareAndSwap(nil, c) {
			return
		}
		c.writerWait = func(woken bool) {
			if !woken {
				w.waits.Add(1)
				return
			}
			if w.wakes.Add(1) == 1 {
				close(w.entered)
				<-w.release
			}
		}
	})
}

// parked waits until l's writer (released) waits with no wake-up token
// left: a frame queued now is written only if something wakes it.
func (w *wakeHold) parked(t *testing.T, l *Link) {
	t.Helper()
	poll(t, "the writer to wait", func() bool {
		return w.waits.Load() > w.wakes.Load() && len(l.wake) == 0
	})
}

// lingerFor sets the linger delay of a link.
func lingerFor(d time.Duration) Option {
	return optionFunc(func(c *config) { c.lingerDelay = d })
}

// streamPayload is a 1000-byte payload: about 65 frames make a batch.
var streamPayload = make([]byte, 1000)

// sendStream sends frames CallID from..to-1 with Send (plain frames).
func sendStream(ctx context.Context, t *testing.T, l *Link, from, to uint64) {
	t.Helper()
	for id := from; id < to; id++ {
		if err := l.SendBytes(ctx, &wire.Header{CallID: id}, streamPayload, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// streamFrames is how many frames of streamPayload make the queue reach
// streamBatch.
func streamFrames(t *testing.T) uint64 {
	b, err := wire.AppendFrameBytes(nil, &wire.Header{CallID: 1}, streamPayload, wire.DefaultMaxFrameSize)
	if err != nil {
		t.Fatal(err)
	}
	return uint64((streamBatch + len(b) - 1) / len(b))
}

// startStream makes a, whose writer holdWake stops, stream: it sends
// frame 1, which wakes the writer, and then frames until the queue the
// writer has not taken holds a batch, which the sender writes. It waits
// for the peer to get them all and returns the next CallID.
func startStream(ctx context.Context, t *testing.T, a *Link, c *collector, w *wakeHold) uint64 {
	t.Helper()
	sendStream(ctx, t, a, 1, 2)
	<-w.entered
	// The writer may have taken frame 1 before it first slept: then it
	// stopped when woken for frame 2.
	end := a.Stats().FramesSent + streamFrames(t) + 1
	sendStream(ctx, t, a, 2, end)
	c.wait(t, int(end-1))
	return end
}

// checkOrder checks that frames arrived as CallID 1, 2, ...
func checkOrder(t *testing.T, got []received) {
	t.Helper()
	for i, f := range got {
		if f.hdr.CallID != uint64(i+1) {
			t.Fatalf("frame %d has CallID %d: out of order", i, f.hdr.CallID)
		}
	}
}

// TestStreamSenderWrites: while the writer is woken but has not taken the
// queue, a sender that queues a whole batch writes it itself, so the peer
// gets the frames although the writer has not run. Fails if only the
// writer writes.
func TestStreamSenderWrites(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	c := newCollector(false)
	w, hold := holdWake()
	a, _ := linkPair(t, discard, c.handle, hold)
	defer close(w.release)
	next := startStream(ctx, t, a, c, w)
	checkOrder(t, c.wait(t, int(next-1)))
}

// TestStreamLingerTail: once streaming, the first frame queued after a
// write wakes nobody; the linger timer hands it to the writer. Fails if
// the last frames of a stream wait for a next batch forever.
func TestStreamLingerTail(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	c := newCollector(false)
	w, hold := holdWake()
	a, _ := linkPair(t, discard, c.handle, hold)
	next := startStream(ctx, t, a, c, w)
	close(w.release) // the writer finds the queue empty and waits
	w.parked(t, a)
	sendStream(ctx, t, a, next, next+2)
	checkOrder(t, c.wait(t, int(next)+1))
}

// TestStreamOtherFrameWakes: a frame of another kind queued behind a
// stream's lingering frames (SendNow, SendDirect) wakes the writer, and
// everything goes in order. The linger timer is set to an hour, so it is
// not what sends them. Fails if such a frame waits for the stream.
func TestStreamOtherFrameWakes(t *testing.T) {
	for _, kind := range []string{"SendNow", "SendDirect"} {
		t.Run(kind, func(t *testing.T) {
			checkLeaks(t)
			ctx := testContext(t)
			c := newCollector(false)
			w, hold := holdWake()
			a, _ := linkPair(t, discard, c.handle, hold, lingerFor(time.Hour))
			next := startStream(ctx, t, a, c, w)
			close(w.release)
			w.parked(t, a)
			sendStream(ctx, t, a, next, next+2) // lingering
			var err error
			h := wire.Header{CallID: next + 2, Flags: wire.FlagSystem}
			if kind == "SendNow" {
				err = a.SendNow(&h, &herdv1.CreditRequest{Frames: 1})
			} else {
				err = a.SendDirect(ctx, &h, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			checkOrder(t, c.wait(t, int(next)+2))
		})
	}
}

// TestStreamWritesBeforeCreditWait: a streaming sender that runs out of
// credit writes its lingering frames before it waits, since the peer
// grants credit only for what it receives. The writer stays stopped and
// the linger timer is set to an hour, so only the sender can write them.
// Fails if the sender waits with its frames still queued.
func TestStreamWritesBeforeCreditWait(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	c := newCollector(false)
	w, hold := holdWake()
	a, _ := linkPair(t, discard, c.handle, hold, lingerFor(time.Hour), WithCredit(nil))
	defer close(w.release)
	a.Grant(1<<20, 1<<30)
	next := startStream(ctx, t, a, c, w)
	// Credit for three more frames (Grant adds to what is left).
	a.mu.Lock()
	a.credit.frames = 3
	a.mu.Unlock()
	credit := next + 2
	sendStream(ctx, t, a, next, credit+1) // lingering, the credit used up
	sent := make(chan error, 1)
	go func() {
		sent <- a.SendBytes(ctx, &wire.Header{CallID: credit + 1}, streamPayload, nil)
	}()
	got := c.wait(t, int(credit)) // written before the sender waits
	select {
	case err := <-sent:
		t.Fatalf("sent without credit: %v", err)
	default:
	}
	a.Grant(1, 0)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	checkOrder(t, got)
}
