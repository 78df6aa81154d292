//go:build linux || darwin

package link

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestSendBorrowedNowIdle: on an idle link, SendBorrowedNow writes the
// frame and its descriptor on the caller's goroutine (one sendmsg, counted
// before it returns), and the peer receives the very file it was sent.
func TestSendBorrowedNowIdle(t *testing.T) {
	checkLeaks(t)
	c := newCollector(false)
	t.Cleanup(c.closeFiles)
	a, _ := linkPair(t, discard, c.handle)
	r, w := pipe(t)
	defer r.Close()
	defer w.Close()
	fd := int(r.Fd())
	before := a.Stats().Writes
	if err := a.SendBorrowedNow(&wire.Header{Procedure: "/t.T/Handoff", CallID: 5}, &herdv1.ErrorEvent{Message: "x"}, []int{fd}); err != nil {
		t.Fatal(err)
	}
	if got := a.Stats(); got.Writes != before+1 || got.FramesSent != 1 {
		t.Errorf("after SendBorrowedNow: %d writes, %d frames sent; want 1, 1 (written by the caller)", got.Writes-before, got.FramesSent)
	}
	a.Detach([]int{fd})
	got := c.wait(t, 1)[0]
	if got.hdr.CallID != 5 || got.hdr.FDCount != 1 || len(got.files) != 1 {
		t.Fatalf("got %+v with %d files", got.hdr, len(got.files))
	}
	if inode(t, int(got.files[0].Fd())) != inode(t, fd) {
		t.Error("the peer received another file than the one sent")
	}
	// Refusals are SendBorrowed's, and nothing is queued.
	if err := a.SendBorrowedNow(&wire.Header{}, nil, make([]int, MaxFDsPerFrame+1)); err == nil {
		t.Error("too many descriptors accepted")
	}
	if err := a.SendBorrowedNow(&wire.Header{}, nil, nil); err != nil {
		t.Errorf("frame without descriptors: %v", err)
	}
	c.wait(t, 2)
}

// TestSendBorrowedNowKeepsOrder: senders mixing SendBorrowedNow frames
// (small and larger than the socket buffer, so that some stop half way
// and the writer finishes them, and some find the socket full and go to
// the writer's queue) with queued frames, against a reader that holds the
// link back at first: every frame arrives whole, each sender's in order,
// each with the file it was sent with.
func TestSendBorrowedNowKeepsOrder(t *testing.T) {
	checkLeaks(t)
	c := newCollector(true)
	t.Cleanup(c.closeFiles)
	a, _ := linkPair(t, discard, c.handle, WithMaxFrameSize(4<<20))
	r, w := pipe(t)
	defer r.Close()
	defer w.Close()
	want := inode(t, int(r.Fd()))
	const senders, perSender = 4, 200
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		fds []int // the senders' copies, closed once their frames arrived
	)
	big := strings.Repeat("b", 1<<20) // far more than a socket buffer
	for s := range uint64(senders) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range uint64(perSender) {
				h := wire.Header{Procedure: "/t.T/Seq", CallID: s<<32 | i}
				msg := &herdv1.ErrorEvent{Message: "small"}
				if i%25 == 3 {
					msg.Message = big
				}
				var err error
				if (s+i)%4 == 0 {
					err = a.SendBytes(context.Background(), &h, []byte("queued"), nil)
				} else {
					fd, derr := unix.Dup(int(r.Fd()))
					if derr != nil {
						t.Error(derr)
						return
					}
					mu.Lock()
					fds = append(fds, fd)
					mu.Unlock()
					err = a.SendBorrowedNow(&h, msg, []int{fd})
				}
				if err != nil {
					t.Errorf("sender %d frame %d: %v", s, i, err)
					return
				}
			}
		}()
	}
	c.wait(t, 1)
	close(c.gate)
	wg.Wait()
	frames := c.wait(t, senders*perSender)
	next := make([]uint64, senders)
	for _, f := range frames {
		s, seq := f.hdr.CallID>>32, f.hdr.CallID&(1<<32-1)
		if seq != next[s] {
			t.Fatalf("sender %d: frame %d arrived after %d", s, seq, next[s]-1)
		}
		next[s]++
		if (s+seq)%4 == 0 {
			if len(f.files) != 0 || string(f.payload) != "queued" {
				t.Fatalf("frame %x: %d files, payload %q", f.hdr.CallID, len(f.files), f.payload)
			}
			continue
		}
		if len(f.files) != 1 || inode(t, int(f.files[0].Fd())) != want {
			t.Fatalf("frame %x: %d files, not the file sent", f.hdr.CallID, len(f.files))
		}
	}
	a.Detach(fds)
	for _, fd := range fds {
		unix.Close(fd)
	}
	poll(t, "frames counted as sent", func() bool { return a.Stats().FramesSent == senders*perSender })
}

// fillSocket writes whole small frames (CallID from id up) into l's socket
// behind the link's back until the socket takes no more, and returns the
// next CallID. The link's writer must be idle.
func fillSocket(t *testing.T, l *Link, id uint64) uint64 {
	t.Helper()
	var werr error
	err := l.rc.Control(func(fd uintptr) {
		for {
			b := frameBytes(t, wire.Header{Procedure: "/t.T/Fill", CallID: id}, nil)
			n, err := unix.Write(int(fd), b)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return
			case err != nil:
				werr = err
				return
			case n != len(b):
				werr = fmt.Errorf("short write of a %d-byte frame: %d", len(b), n)
				return
			}
			id++
		}
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSendBorrowedNowSocketFull: a frame the full socket does not take at
// all goes to the writer's queue, ahead of frames queued after it, and is
// written once the peer reads; a frame the socket takes in part is
// finished by the writer. Detaching the queued frame's descriptor early
// (a peer that reports it before it could have received it) still
// delivers the file it was sent with.
func TestSendBorrowedNowSocketFull(t *testing.T) {
	checkLeaks(t)
	c := newCollector(true)
	t.Cleanup(c.closeFiles)
	a, _ := linkPair(t, discard, c.handle, WithMaxFrameSize(4<<20))
	r, w := pipe(t)
	defer r.Close()
	defer w.Close()
	want := inode(t, int(r.Fd()))

	// The socket full, the writer idle: the frame is queued.
	next := fillSocket(t, a, 100)
	c.wait(t, 1) // the reader holds a fill frame: nothing more is read
	next = fillSocket(t, a, next)
	fd2, err := unix.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	sent := a.Stats().FramesSent
	if err := a.SendBorrowedNow(&wire.Header{Procedure: "/t.T/Queued", CallID: 2}, &herdv1.ErrorEvent{Message: "q"}, []int{fd2}); err != nil {
		t.Fatal(err)
	}
	if err := a.SendBytes(context.Background(), &wire.Header{Procedure: "/t.T/After", CallID: 3}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := a.Stats().FramesSent; got != sent {
		t.Errorf("%d frames counted as sent into a full socket", got-sent)
	}
	a.Detach([]int{fd2})
	unix.Close(fd2) // its number may now be reused; the frame has a duplicate
	if fd3, err := unix.Dup(int(w.Fd())); err == nil {
		defer unix.Close(fd3) // most likely fd2's number, another file
	}
	close(c.gate)
	fills := int(next - 100)
	frames := c.wait(t, fills+2)
	var tail []received
	for _, f := range frames {
		if f.hdr.Procedure != "/t.T/Fill" {
			tail = append(tail, f)
		}
	}
	if len(tail) != 2 || tail[0].hdr.CallID != 2 || tail[1].hdr.CallID != 3 {
		t.Fatalf("after the fill frames: %+v", tail)
	}
	if len(tail[0].files) != 1 || inode(t, int(tail[0].files[0].Fd())) != want {
		t.Fatalf("queued frame: %d files, not the file sent", len(tail[0].files))
	}
	poll(t, "frames counted as sent", func() bool { return a.Stats().FramesSent == sent+2 })

	// A frame far larger than the socket buffer, on an idle link: the
	// caller writes a part (with the descriptor), the writer the rest.
	fd1, err := unix.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	big := &herdv1.ErrorEvent{Message: strings.Repeat("b", 2<<20)}
	if err := a.SendBorrowedNow(&wire.Header{Procedure: "/t.T/Big", CallID: 1}, big, []int{fd1}); err != nil {
		t.Fatal(err)
	}
	f := c.wait(t, fills+3)[fills+2]
	poll(t, "the big frame counted as sent", func() bool { return a.Stats().FramesSent == sent+3 })
	a.Detach([]int{fd1})
	unix.Close(fd1)

	if f.hdr.CallID != 1 || len(f.files) != 1 || inode(t, int(f.files[0].Fd())) != want || len(f.payload) < 2<<20 {
		t.Fatalf("big frame: %+v, %d files, %d bytes", f.hdr, len(f.files), len(f.payload))
	}
}

// TestSendOwnedNow: the link closes an owned descriptor once it has sent
// it, written on the caller's goroutine on an idle link: once the peer's
// copy and the caller's other copy are closed, the pipe's reader sees the
// end of the stream.
func TestSendOwnedNow(t *testing.T) {
	checkLeaks(t)
	c := newCollector(false)
	a, _ := linkPair(t, discard, c.handle)
	r, w := pipe(t)
	defer r.Close()
	fd, err := unix.Dup(int(w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	before := a.Stats().Writes
	if err := a.SendOwnedNow(&wire.Header{Procedure: "/t.T/Owned", CallID: 7}, nil, []int{fd}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if got := a.Stats().Writes; got != before+1 {
		t.Errorf("%d writes by the caller, want 1", got-before)
	}
	got := c.wait(t, 1)[0]
	if got.hdr.CallID != 7 || len(got.files) != 1 {
		t.Fatalf("got %+v with %d files", got.hdr, len(got.files))
	}
	got.files[0].Close()
	w.Close()
	expectEOF(t, r)
}
