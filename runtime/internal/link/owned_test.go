//go:build linux || darwin

package link

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestSendOwned: the link closes owned descriptors once sent, and when it
// ends before sending them; SendOwned never waits.
func TestSendOwned(t *testing.T) {
	checkLeaks(t)
	cb := newCollector(false)
	t.Cleanup(cb.closeFiles)
	a, _ := linkPair(t, discard, cb.handle)
	r, w := pipe(t)
	for i := range 3 {
		d, err := unix.Dup(int(r.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.SendOwned(&wire.Header{CallID: uint64(i + 1)}, nil, []int{d}); err != nil {
			t.Fatal(err)
		}
	}
	frames := cb.wait(t, 3)
	for i, f := range frames {
		if len(f.files) != 1 || f.hdr.CallID != uint64(i+1) {
			t.Fatalf("frame %d: %+v", i, f.hdr)
		}
	}
	if _, err := w.WriteString("x"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if n, err := frames[2].files[0].Read(buf); n != 1 || err != nil {
		t.Fatalf("read %d %v", n, err)
	}

	// A closed link refuses the frame and leaves the descriptors to the
	// caller.
	a.Close()
	<-a.Done()
	d, _ := unix.Dup(int(r.Fd()))
	if err := a.SendOwned(nil, nil, []int{d}); !errors.Is(err, ErrLinkClosed) {
		t.Fatalf("SendOwned on a closed link: %v", err)
	}
	unix.Close(d)
}

// TestSendOwnedDroppedOnAbort: owned descriptors still queued when the link
// is aborted are closed by the link.
func TestSendOwnedDroppedOnAbort(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	cb := newCollector(true)
	a, _ := linkPair(t, discard, cb.handle, WithWriteBufferLimit(1024))
	t.Cleanup(cb.closeFiles)
	stallWriter(t, ctx, a, cb)
	r, _ := pipe(t)
	for range 4 {
		d, err := unix.Dup(int(r.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.SendOwned(nil, nil, []int{d}); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	<-a.Done()
	close(cb.gate)
}

// TestSendBorrowed: the link sends borrowed descriptors without closing
// them.
func TestSendBorrowed(t *testing.T) {
	checkLeaks(t)
	cb := newCollector(false)
	t.Cleanup(cb.closeFiles)
	a, _ := linkPair(t, discard, cb.handle)
	r, _ := pipe(t)
	fd := int(r.Fd())
	if err := a.SendBorrowed(&wire.Header{CallID: 1}, nil, []int{fd}); err != nil {
		t.Fatal(err)
	}
	frames := cb.wait(t, 1)
	if len(frames[0].files) != 1 {
		t.Fatalf("frame carries %d files", len(frames[0].files))
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("borrowed descriptor closed by the link: %v", err)
	}
}
