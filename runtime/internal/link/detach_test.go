//go:build linux || darwin

package link

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// inode identifies the open file behind fd.
func inode(t *testing.T, fd int) [2]uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return [2]uint64{uint64(st.Dev), uint64(st.Ino)}
}

// TestDetachUnsentFrame: a borrowed descriptor detached and closed before
// its frame is written (a peer reporting it early) still reaches the peer
// as the file it was sent with, never as whatever the kernel gave its
// number to meanwhile. The frame is either still queued (the writer busy
// with an earlier frame) or in the batch being written.
func TestDetachUnsentFrame(t *testing.T) {
	for _, inflight := range []bool{false, true} {
		name := "queued"
		if inflight {
			name = "inflight"
		}
		t.Run(name, func(t *testing.T) {
			checkLeaks(t)
			ctx := testContext(t)
			cb := newCollector(false)
			t.Cleanup(cb.closeFiles)
			hold, entered, release := holdWriter()
			a, _ := linkPair(t, discard, cb.handle, hold)
			if !inflight {
				// The writer takes this frame alone, then stops.
				if err := a.SendBytes(ctx, &wire.Header{CallID: 1}, nil, nil); err != nil {
					t.Fatal(err)
				}
				<-entered
			}
			r, w := pipe(t)
			defer w.Close()
			fd, err := unix.Dup(int(r.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			want := inode(t, fd)
			if err := a.SendBorrowed(&wire.Header{CallID: 2}, nil, []int{fd}); err != nil {
				unix.Close(fd)
				t.Fatal(err)
			}
			if inflight {
				<-entered // the writer holds the batch with the frame
			}
			// The caller is told the descriptor is done with, too early,
			// closes it, and the number is reused at once.
			a.Detach([]int{fd})
			unix.Close(fd)
			r2, w2 := pipe(t)
			defer w2.Close()
			reused, err := unix.Dup(int(r2.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(reused)
			if inode(t, reused) == want {
				t.Fatal("two pipes share an inode")
			}
			close(release)

			n := 2
			if inflight {
				n = 1
			}
			frames := cb.wait(t, n)
			f := frames[len(frames)-1]
			if f.hdr.CallID != 2 || len(f.files) != 1 {
				t.Fatalf("frame %+v with %d files", f.hdr, len(f.files))
			}
			if got := inode(t, int(f.files[0].Fd())); got != want {
				t.Fatalf("the peer received another file (reused descriptor %d: %v) than the one sent (%v)", reused, inode(t, reused) == got, want)
			}
		})
	}
}

// TestDetachSentFrame: detaching descriptors whose frame has been written
// (the honest case) duplicates nothing and leaves them to the caller.
func TestDetachSentFrame(t *testing.T) {
	checkLeaks(t)
	cb := newCollector(false)
	t.Cleanup(cb.closeFiles)
	a, _ := linkPair(t, discard, cb.handle)
	r, _ := pipe(t)
	fd := int(r.Fd())
	if err := a.SendBorrowed(&wire.Header{CallID: 1}, nil, []int{fd}); err != nil {
		t.Fatal(err)
	}
	cb.wait(t, 1)
	before := openFDs(t)
	a.Detach([]int{fd})
	if after := openFDs(t); after != before {
		t.Fatalf("Detach of a sent frame changed the open descriptors: %d -> %d", before, after)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("descriptor closed by Detach: %v", err)
	}
}

// TestDetachAfterEnd: after the link ended, Detach does nothing (the link
// no longer uses borrowed descriptors).
func TestDetachAfterEnd(t *testing.T) {
	checkLeaks(t)
	hold, entered, release := holdWriter()
	a, b := linkPair(t, discard, discard, hold)
	r, _ := pipe(t)
	if err := a.SendBorrowed(&wire.Header{CallID: 1}, nil, []int{int(r.Fd())}); err != nil {
		t.Fatal(err)
	}
	<-entered
	a.Abort(os.ErrClosed)
	close(release)
	<-a.Done()
	<-b.Done() // the peer's end closes its socket too
	before := openFDs(t)
	a.Detach([]int{int(r.Fd())})
	if after := openFDs(t); after != before {
		t.Fatalf("Detach after the end changed the open descriptors: %d -> %d", before, after)
	}
}
