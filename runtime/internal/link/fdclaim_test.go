//go:build linux || darwin

package link

import (
	"errors"
	"os"
	"sort"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// dupN returns n duplicates of fd.
func dupN(t testing.TB, fd, n int) []int {
	t.Helper()
	fds := make([]int, 0, n)
	for range n {
		d, err := unix.Dup(fd)
		if err != nil {
			closeFDs(fds)
			t.Fatal(err)
		}
		fds = append(fds, d)
	}
	return fds
}

// expectUnclaimed checks that l ended with a protocol error wrapping
// ErrUnclaimedFDs.
func expectUnclaimed(t testing.TB, l *Link) {
	t.Helper()
	err := l.Err()
	var pe *wire.ProtocolError
	if !errors.As(err, &pe) || !errors.Is(err, ErrUnclaimedFDs) {
		t.Fatalf("Err() = %v, want a *wire.ProtocolError wrapping ErrUnclaimedFDs", err)
	}
}

// TestFDFloodEndsLink is finding 4 of issue 9: a peer that attaches 250
// descriptors to each of 40 frames claiming none must not make the link
// hold them. The first such frame ends the link with ErrUnclaimedFDs, the
// descriptors are closed at once (the peer's end is still open), and the
// process is back to the descriptors it had.
func TestFDFloodEndsLink(t *testing.T) {
	checkLeaks(t)
	cb := newCollector(false)
	l, raw := rawPair(t, cb.handle)
	r, w := pipe(t)
	before := openFDs(t)
	frame := frameBytes(t, wire.Header{Procedure: "/x.v1.X/Flood"}, nil)
	sent := 0
	for range 40 {
		fds := dupN(t, int(w.Fd()), 250)
		_, err := unix.SendmsgN(raw, frame, unix.UnixRights(fds...), nil, 0)
		closeFDs(fds)
		if err != nil {
			break // EPIPE: the link has ended
		}
		sent++
	}
	w.Close()
	waitDone(t, l)
	expectUnclaimed(t, l)
	// Closed at once: nothing received is still open, though the raw end
	// is, and every write end of the pipe is closed (those still in the
	// socket's queue were dropped with the link's end of it).
	if n := openFDs(t); n > before-1 {
		t.Fatalf("%d descriptors open after the flood, %d before", n, before)
	}
	expectEOF(t, r)
	if got := len(cb.frames); got > 1 {
		t.Fatalf("the handler saw %d flood frames; the first one ends the link", got)
	}
	t.Logf("flood: %d of 40 sendmsg calls succeeded; link ended with %v", sent, l.Err())
}

// TestFDsWithTheWrongBytes: descriptors that do not arrive with the first
// byte of a frame claiming them are a protocol error, closed at once.
func TestFDsWithTheWrongBytes(t *testing.T) {
	for _, tt := range []struct {
		name string
		send func(t *testing.T, l *Link, raw, fd int)
	}{
		{"more than claimed", func(t *testing.T, l *Link, raw, fd int) {
			rawSendFDs(t, raw, frameBytes(t, wire.Header{CallID: 1, FDCount: 1}, nil), fd, fd)
		}},
		{"middle of a frame", func(t *testing.T, l *Link, raw, fd int) {
			// The frame claims one, sent with its first byte; another
			// arrives with its last byte, where no frame starts.
			b := frameBytes(t, wire.Header{CallID: 1, FDCount: 1, Procedure: "/x.v1.X/Middle"}, nil)
			n, err := unix.SendmsgN(raw, b[:1], unix.UnixRights(fd), nil, 0)
			if err != nil || n != 1 {
				t.Fatal(n, err)
			}
			rawSendFDs(t, raw, b[1:], fd)
		}},
		{"middle of an unfinished frame", func(t *testing.T, l *Link, raw, fd int) {
			b := frameBytes(t, wire.Header{CallID: 1, Procedure: "/x.v1.X/Unfinished"}, nil)
			rawWrite(t, raw, b[:3])
			// Read apart from what follows, or the two could arrive in one
			// read, which would carry the frame's first byte.
			poll(t, "the first bytes read", func() bool { return l.Stats().BytesReceived == 3 })
			n, err := unix.SendmsgN(raw, b[3:5], unix.UnixRights(fd), nil, 0)
			if err != nil || n != 2 {
				t.Fatal(n, err)
			}
		}},
		{"claimed by a frame sent later", func(t *testing.T, l *Link, raw, fd int) {
			// Descriptors with a whole frame claiming none: the frame
			// after it cannot claim them.
			rawSendFDs(t, raw, frameBytes(t, wire.Header{CallID: 1}, nil), fd)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			cb := newCollector(false)
			l, raw := rawPair(t, cb.handle)
			r, w := pipe(t)
			before := openFDs(t)
			tt.send(t, l, raw, int(w.Fd()))
			w.Close()
			waitDone(t, l)
			expectUnclaimed(t, l)
			if n := openFDs(t); n > before-1 {
				t.Fatalf("%d descriptors open, %d before", n, before)
			}
			cb.closeFiles()
			expectEOF(t, r)
		})
	}
}

// TestFDsOfCoalescedFrames: the legitimate cases around the rule. Frames
// without descriptors before and after a descriptor frame, in the same
// sendmsg and the same read, and a descriptor frame whose first byte (and
// descriptors) arrives in one read and the rest in later ones, all keep
// the link up.
func TestFDsOfCoalescedFrames(t *testing.T) {
	checkLeaks(t)
	cb := newCollector(false)
	t.Cleanup(cb.closeFiles)
	l, raw := rawPair(t, cb.handle, WithReadBufferSize(512), WithMaxFrameSize(1<<16))
	_, w := pipe(t)
	fd := int(w.Fd())
	a := frameBytes(t, wire.Header{CallID: 1}, nil)
	b := frameBytes(t, wire.Header{CallID: 2, FDCount: 2}, nil)
	c := frameBytes(t, wire.Header{CallID: 3}, nil)
	rawWrite(t, raw, a)
	rawSendFDs(t, raw, append(append([]byte(nil), b...), c...), fd, fd)
	// A large frame with descriptors, sent in pieces: the first byte
	// carries them.
	big := frameBytes(t, wire.Header{CallID: 4, FDCount: 1, Procedure: "/x.v1.X/" + string(make([]byte, 4000))}, nil)
	n, err := unix.SendmsgN(raw, big[:1], unix.UnixRights(fd), nil, 0)
	if err != nil || n != 1 {
		t.Fatal(n, err)
	}
	for p := big[1:]; len(p) > 0; p = p[min(len(p), 100):] {
		rawWrite(t, raw, p[:min(len(p), 100)])
	}
	got := cb.wait(t, 4)
	for i, want := range []int{0, 2, 0, 1} {
		if len(got[i].files) != want {
			t.Fatalf("frame %d: %d files, want %d", i+1, len(got[i].files), want)
		}
	}
	if err := l.Err(); err != nil {
		t.Fatalf("link ended: %v", err)
	}
}

// TestFDsLostToTheLimit: when this process cannot install the descriptors
// of a frame (its RLIMIT_NOFILE is reached, the kernel sets MSG_CTRUNC and
// closes the rest), the frame is delivered with those that were installed
// and Envelope.FDsLost counting the others, and the link goes on.
func TestFDsLostToTheLimit(t *testing.T) {
	checkLeaks(t)
	type got struct {
		files []*os.File
		lost  uint32
		id    uint64
	}
	ch := make(chan got, 4)
	gate, held := make(chan struct{}), make(chan struct{})
	l, raw := rawPair(t, func(env *wire.Envelope, files []*os.File) error {
		if env.CallID == 0 {
			close(held)
			<-gate // holds the reader while the test sets the limit
			return nil
		}
		ch <- got{append([]*os.File(nil), files...), env.FDsLost, env.CallID}
		return nil
	})
	r, w := pipe(t)
	// The reader waits in the handler of a first frame while the frame with
	// descriptors is queued in the socket and the limit lowered.
	rawWrite(t, raw, frameBytes(t, wire.Header{}, nil))
	<-held
	fds := dupN(t, int(w.Fd()), 10)
	w.Close()
	rawSendFDs(t, raw, frameBytes(t, wire.Header{CallID: 1, FDCount: 10}, nil), fds...)
	closeFDs(fds)

	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// The lowest limit that leaves exactly 3 descriptor numbers free.
	open := map[int]bool{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		ents, err = os.ReadDir("/dev/fd")
	}
	if err != nil {
		t.Skipf("cannot list descriptors: %v", err)
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			open[n] = true
		}
	}
	nums := make([]int, 0, len(open))
	for n := range open {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	limit, free := 0, 0
	for free < 3 || open[limit] {
		if !open[limit] {
			free++
		}
		limit++
	}
	lim := old
	lim.Cur = uint64(limit)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
				t.Errorf("restoring RLIMIT_NOFILE: %v", err)
			}
		}
	}
	defer restore()
	close(gate)
	first := <-ch
	restore()
	for _, f := range first.files {
		f.Close()
	}
	// About 3 numbers were free (the listing's own descriptor was counted
	// as open).
	if first.id != 1 || len(first.files) > 4 || int(first.lost)+len(first.files) != 10 || first.lost == 0 {
		t.Fatalf("frame %d: %d files, %d lost; want at most 4 files and the rest of 10 lost", first.id, len(first.files), first.lost)
	}
	// The link goes on, and a frame after it gets its descriptor.
	_, w2 := pipe(t)
	rawSendFDs(t, raw, frameBytes(t, wire.Header{CallID: 2, FDCount: 1}, nil), int(w2.Fd()))
	second := <-ch
	for _, f := range second.files {
		f.Close()
	}
	if second.id != 2 || len(second.files) != 1 || second.lost != 0 {
		t.Fatalf("frame %d: %d files, %d lost; want 1 and 0", second.id, len(second.files), second.lost)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("link ended: %v", err)
	}
	expectEOF(t, r)
	t.Logf("%d descriptors open; limit %d; %d installed, %d lost", len(nums), limit, len(first.files), first.lost)
}
