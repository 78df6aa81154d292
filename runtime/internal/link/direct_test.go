//go:build linux || darwin

package link

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// seqFrame is a frame numbered (sender, seq), with a payload of size bytes
// that repeat the sequence number.
func seqFrame(sender, seq uint64, size int) (wire.Header, []byte) {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(seq + uint64(i))
	}
	return wire.Header{Procedure: "/t.T/Seq", CallID: sender<<32 | seq}, payload
}

func checkSeqPayload(t *testing.T, r received) {
	t.Helper()
	seq := r.hdr.CallID & (1<<32 - 1)
	for i, b := range r.payload {
		if b != byte(seq+uint64(i)) {
			t.Fatalf("frame %x: payload byte %d is %d", r.hdr.CallID, i, b)
		}
	}
}

// TestSendDirectKeepsOrder: senders mixing SendDirect and Send, some with
// frames larger than the socket buffer (so that direct writes stop half
// way and the writer finishes them), and a reader that holds the link
// back at first: every frame arrives whole, each sender's in order.
func TestSendDirectKeepsOrder(t *testing.T) {
	checkLeaks(t)
	c := newCollector(true)
	a, _ := linkPair(t, discard, c.handle, WithMaxFrameSize(4<<20))
	const senders, perSender = 6, 300
	var wg sync.WaitGroup
	for s := range uint64(senders) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := range uint64(perSender) {
				size := 16
				if i%20 == 7 {
					size = 1 << 20 // far more than a socket buffer
				}
				h, p := seqFrame(s, i, size)
				var err error
				if (s+i)%3 == 0 {
					err = a.SendBytes(ctx, &h, p, nil)
				} else {
					err = a.sendFrame(ctx, &h, nil, p, nil, true)
				}
				if err != nil {
					t.Errorf("sender %d frame %d: %v", s, i, err)
					return
				}
			}
		}()
	}
	// Let the senders fill the socket, then let the reader go.
	c.wait(t, 1)
	close(c.gate)
	wg.Wait()
	frames := c.wait(t, senders*perSender)
	next := make([]uint64, senders)
	for _, r := range frames {
		s, seq := r.hdr.CallID>>32, r.hdr.CallID&(1<<32-1)
		if seq != next[s] {
			t.Fatalf("sender %d: frame %d arrived after %d", s, seq, next[s]-1)
		}
		next[s]++
		checkSeqPayload(t, r)
	}
	poll(t, "frames counted as sent", func() bool { return a.Stats().FramesSent == senders*perSender })
}

// TestSendDirectPublicAPI: SendDirect encodes a message like Send, and
// writes it at once when the link is idle: no writer hand-off is needed
// for the frame to arrive.
func TestSendDirectPublicAPI(t *testing.T) {
	checkLeaks(t)
	c := newCollector(false)
	a, _ := linkPair(t, discard, c.handle)
	before := a.Stats().Writes
	h := wire.Header{Procedure: "/t.T/Direct", CallID: 9}
	if err := a.SendDirect(context.Background(), &h, benchPayload); err != nil {
		t.Fatal(err)
	}
	// Written before SendDirect returned, by this goroutine.
	if got := a.Stats(); got.Writes != before+1 || got.FramesSent != 1 {
		t.Errorf("after SendDirect: %d writes, %d frames sent; want 1, 1", got.Writes-before, got.FramesSent)
	}
	r := c.wait(t, 1)[0]
	if r.hdr.Procedure != "/t.T/Direct" || r.hdr.CallID != 9 {
		t.Errorf("got %+v", r.hdr)
	}
	// Refusals are Send's.
	big := wire.Header{Procedure: "/t.T/Big"}
	if err := a.SendDirect(context.Background(), &big, &herdv1.ErrorEvent{Message: strings.Repeat("x", wire.DefaultMaxFrameSize+1)}); err == nil {
		t.Error("oversize SendDirect succeeded")
	}
}

// TestSendDirectShutdownFlushesCarry: a direct write the socket took only
// part of is finished by the writer, also when the link is shut down
// before the peer reads.
func TestSendDirectShutdownFlushesCarry(t *testing.T) {
	checkLeaks(t)
	fa, fb, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	a, err := New(fa, discard, WithMaxFrameSize(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	h, p := seqFrame(1, 5, 2<<20)
	if err := a.sendFrame(context.Background(), &h, nil, p, nil, true); err != nil {
		t.Fatal(err)
	}
	h2, p2 := seqFrame(1, 6, 10)
	if err := a.sendFrame(context.Background(), &h2, nil, p2, nil, true); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() { shut <- a.Shutdown(testContext(t)) }()

	// Read everything the link wrote until it closed.
	var all []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(int(fb.Fd()), buf)
		if err == unix.EINTR {
			continue
		}
		if n <= 0 || err != nil {
			break
		}
		all = append(all, buf[:n]...)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	<-a.Done()
	var got []string
	for len(all) > 0 {
		var env wire.Envelope
		n, err := wire.Decode(all, 4<<20, &env)
		if err != nil || n == 0 {
			t.Fatalf("decode after %q: n=%d err=%v, %d bytes left", got, n, err, len(all))
		}
		want := p
		if env.CallID == h2.CallID {
			want = p2
		}
		if !bytes.Equal(env.Payload, want) {
			t.Fatalf("frame %x: payload differs", env.CallID)
		}
		got = append(got, fmt.Sprint(env.CallID&0xff))
		all = all[n:]
	}
	if fmt.Sprint(got) != "[5 6]" {
		t.Errorf("frames %v, want [5 6]", got)
	}
}

// TestSendDirectAbortWithCarry: closing a link while the writer still has
// part of a direct write ends it cleanly.
func TestSendDirectAbortWithCarry(t *testing.T) {
	checkLeaks(t)
	a, raw := rawPair(t, discard, WithMaxFrameSize(4<<20))
	_ = raw // never read: the socket stays full
	h, p := seqFrame(1, 1, 2<<20)
	if err := a.sendFrame(context.Background(), &h, nil, p, nil, true); err != nil {
		t.Fatal(err)
	}
	a.Close()
	waitDone(t, a)
	h2, _ := seqFrame(1, 2, 1)
	if err := a.SendDirect(context.Background(), &h2, benchPayload); err == nil {
		t.Error("SendDirect on a closed link succeeded")
	}
}
