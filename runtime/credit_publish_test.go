package runtime

import (
	"errors"
	"testing"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// creditRecorder collects the grants an inboxCredit sends.
type creditRecorder struct{ frames, bytes []uint64 }

func (r *creditRecorder) send(m *herdv1.CreditRequest) {
	r.frames = append(r.frames, uint64(m.GetFrames()))
	r.bytes = append(r.bytes, m.GetBytes())
}

func newTestCredit(frames, bytes int64) (*inboxCredit, *creditRecorder) {
	c, r := new(inboxCredit), new(creditRecorder)
	c.init(frames, bytes, r.send)
	c.grantWindow()
	return c, r
}

// The reader counts admitted credit once per read (publish), but the
// window is enforced exactly: the frame past it fails though nothing was
// published, and so does one past it after a publish.
func TestCreditAdmitUnpublishedExact(t *testing.T) {
	c, _ := newTestCredit(3, 1000)
	for i := range 3 {
		if err := c.admit(10); err != nil {
			t.Fatalf("admit %d within the window: %v", i, err)
		}
	}
	if got := c.recvFrames.Load(); got != 0 {
		t.Fatalf("recvFrames %d before publish, want 0 (counted once per read)", got)
	}
	if err := c.admit(10); !errors.Is(err, errCreditExceeded) {
		t.Fatalf("admit past the window (unpublished) = %v, want errCreditExceeded", err)
	}
	c.publish()
	if f, b := c.recvFrames.Load(), c.recvBytes.Load(); f != 3 || b != 30 {
		t.Fatalf("published %d frames, %d bytes; want 3, 30", f, b)
	}
	if err := c.admit(10); !errors.Is(err, errCreditExceeded) {
		t.Fatalf("admit past the window (published) = %v, want errCreditExceeded", err)
	}
	// Bytes too: 970 of 1000 left, then 370, unpublished.
	c.releaseN(3, 30)
	c.grant()
	if err := c.admit(600); err != nil {
		t.Fatal(err)
	}
	if err := c.admit(600); !errors.Is(err, errCreditExceeded) {
		t.Fatalf("admit of 600 bytes with 370 left (unpublished) = %v, want errCreditExceeded", err)
	}
}

// A peer that waits for credit gets everything back once everything it
// sent is handled, though the reader had not published what it admitted
// when the drainer handled it: the Waiting frame publishes first.
func TestCreditPeerWaitsAfterUnpublished(t *testing.T) {
	c, r := newTestCredit(100, 1<<20)
	for range 2 {
		if err := c.admit(10); err != nil {
			t.Fatal(err)
		}
	}
	c.releaseN(2, 20) // handled before the reader published them
	if len(r.frames) != 1 {
		t.Fatalf("%d grants before the peer waits, want only the window", len(r.frames))
	}
	c.peerWaits()
	if len(r.frames) != 2 || r.frames[1] != 2 || r.bytes[1] != 20 {
		t.Fatalf("grants %v frames %v bytes; want the window, then 2 frames and 20 bytes", r.frames, r.bytes)
	}
	if c.peerWaiting.Load() {
		t.Fatal("peerWaiting still set once everything was given back")
	}
}

// While the peer waits, what the reader admits is published at once, so
// that the drainer that handles the last of it sees everything handled and
// gives the credit back.
func TestCreditAdmitWhilePeerWaits(t *testing.T) {
	c, r := newTestCredit(100, 1<<20)
	if err := c.admit(10); err != nil {
		t.Fatal(err)
	}
	c.peerWaits() // one message not handled yet: nothing to grant
	if len(r.frames) != 1 || !c.peerWaiting.Load() {
		t.Fatalf("grants %v, peerWaiting %v; want only the window, true", r.frames, c.peerWaiting.Load())
	}
	if err := c.admit(10); err != nil { // sent before the peer's sender waited
		t.Fatal(err)
	}
	c.releaseN(1, 10)
	if len(r.frames) != 1 {
		t.Fatalf("granted %v with a message still to handle", r.frames)
	}
	c.releaseN(1, 10) // the last one: everything handled, no publish since
	if len(r.frames) != 2 || r.frames[1] != 2 {
		t.Fatalf("grants %v, want the window then 2 frames", r.frames)
	}
}
