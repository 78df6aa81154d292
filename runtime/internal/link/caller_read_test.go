//go:build linux || darwin

package link

import (
	"errors"
	"math/rand/v2"
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// never is a ReadUntil done that never reports true.
func never() bool { return false }

// readFirstFrame starts a caller that, as soon as the reader goroutine
// is idle, reads until the first frame is dispatched (seen counts them),
// with no limit on its spin; the channel gets whether it read.
func readFirstFrame(l *Link, seen *atomic.Int64) <-chan bool {
	res := make(chan bool, 1)
	go func() {
		for {
			if ok, read := l.ReadUntil(func() bool { return seen.Load() >= 1 }, time.Hour); ok || read {
				res <- read
				return
			}
		}
	}()
	return res
}

// waitCallerRole waits until a caller holds l's reader role.
func waitCallerRole(t *testing.T, l *Link) {
	t.Helper()
	poll(t, "a caller holding the reader role", func() bool { return l.rtok.Load()&rtCaller != 0 })
}

// TestReadUntilDeliversInOrder: frames written in pieces of random sizes
// (frames split across reads, several in one read), some with descriptors,
// while a caller keeps taking the reader role from the reader goroutine
// and giving it back, are all dispatched exactly once, in order, each with
// its own descriptors. Paced, the writer stays a few frames ahead of the
// dispatch, and the caller and the reader goroutine must each dispatch
// some; unpaced, the writer races ahead, and the last frames are left to
// the reader goroutine. It fails if a hand-back loses a readiness (the
// last frames are never dispatched, and the wait times out: mostly seen
// unpaced), if the two read at once (the race detector, or frames out of
// order), or if a caller never gets the role (paced).
func TestReadUntilDeliversInOrder(t *testing.T) {
	for _, paced := range []bool{false, true} {
		name := "unpaced"
		if paced {
			name = "paced"
		}
		t.Run(name, func(t *testing.T) { testReadUntilDelivers(t, paced) })
	}
}

func testReadUntilDelivers(t *testing.T, paced bool) {
	checkLeaks(t)
	const frames = 3000
	var byCaller, byReader atomic.Int64
	var mu sync.Mutex
	var got []uint64
	var fdErr error
	var seen atomic.Int64
	var lp atomic.Pointer[Link]
	h := func(env *wire.Envelope, files []*os.File) error {
		if lp.Load().CallerReading() {
			byCaller.Add(1)
		} else {
			byReader.Add(1)
		}
		mu.Lock()
		got = append(got, env.CallID)
		if want := int(env.CallID % 7 / 6); len(files) != want && fdErr == nil {
			fdErr = errors.New("frame got the wrong number of descriptors")
		}
		mu.Unlock()
		for _, f := range files {
			f.Close()
		}
		seen.Add(1)
		return nil
	}
	l, raw := rawPair(t, h)
	lp.Store(l)
	_, w := pipe(t)

	// The writer: every seventh frame carries a descriptor, sent with the
	// frame's first byte; the rest goes in random pieces.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		rng := rand.New(rand.NewPCG(1, 2))
		var buf []byte
		for id := uint64(1); id <= frames; id++ {
			// At most a few frames ahead of the dispatch, so that the
			// caller and the reader goroutine take turns throughout
			// (buf never holds more than six frames: every seventh
			// flushes it).
			for paced && seen.Load() < int64(id)-8 {
				goruntime.Gosched()
			}
			b := frameBytes(t, wire.Header{Procedure: "/t.T/P", CallID: id, FDCount: uint32(id % 7 / 6)}, benchPayload)
			if id%7 == 6 {
				rawWrite(t, raw, buf)
				buf = buf[:0]
				rawSendFDs(t, raw, b[:1], int(w.Fd()))
				b = b[1:]
			}
			buf = append(buf, b...)
			for len(buf) > 0 && rng.IntN(3) == 0 {
				n := 1 + rng.IntN(len(buf))
				rawWrite(t, raw, buf[:n])
				buf = buf[n:]
				goruntime.Gosched()
			}
		}
		rawWrite(t, raw, buf)
	}()

	// The caller: takes the role for a few frames or a short spin, then
	// leaves it to the reader goroutine until that has dispatched a frame
	// (or the writer is done), and again.
	done := func() bool { return seen.Load() == frames }
	var writerDone atomic.Bool
	go func() { <-wrote; writerDone.Store(true) }()
	deadline := time.Now().Add(testTimeout)
	// Once the writer is done, only the reader goroutine reads: a
	// readiness lost in a hand-back leaves the last frames unread.
	for !done() && !writerDone.Load() && time.Now().Before(deadline) {
		until := seen.Load() + 1 + rand.Int64N(4)
		l.ReadUntil(func() bool { return seen.Load() >= until }, time.Duration(rand.IntN(20))*time.Microsecond)
		before := byReader.Load()
		for byReader.Load() == before && !writerDone.Load() && time.Now().Before(deadline) {
			goruntime.Gosched()
		}
	}
	<-wrote
	poll(t, "every frame dispatched", done)
	mu.Lock()
	defer mu.Unlock()
	for i, id := range got {
		if id != uint64(i+1) {
			t.Fatalf("frame %d dispatched as number %d", id, i+1)
		}
	}
	if fdErr != nil {
		t.Fatal(fdErr)
	}
	if paced && (byCaller.Load() == 0 || byReader.Load() == 0) {
		t.Errorf("dispatched by the caller %d, by the reader goroutine %d: want some by each", byCaller.Load(), byReader.Load())
	}
	t.Logf("dispatched by the caller %d, by the reader goroutine %d", byCaller.Load(), byReader.Load())
}

// TestReadUntilReturnsWhenDone: a caller holding the role returns as soon
// as a frame makes done true, with the role back with the reader
// goroutine, which dispatches what comes next.
func TestReadUntilReturnsWhenDone(t *testing.T) {
	checkLeaks(t)
	var seen atomic.Int64
	var lp atomic.Pointer[Link]
	var readerSaw atomic.Bool
	h := func(env *wire.Envelope, files []*os.File) error {
		if env.CallID == 2 && !lp.Load().CallerReading() {
			readerSaw.Store(true)
		}
		seen.Add(1)
		return nil
	}
	l, raw := rawPair(t, h)
	lp.Store(l)
	type result struct{ ok, read bool }
	res := make(chan result, 1)
	go func() {
		for {
			// An hour: only the frame can end this spin.
			ok, read := l.ReadUntil(func() bool { return seen.Load() == 1 }, time.Hour)
			if read || ok {
				res <- result{ok, read}
				return
			}
		}
	}()
	waitCallerRole(t, l)
	rawWrite(t, raw, frameBytes(t, wire.Header{Procedure: "/t.T/P", CallID: 1}, benchPayload))
	select {
	case r := <-res:
		if !r.ok || !r.read {
			t.Fatalf("ReadUntil = %v, %v; want true, true", r.ok, r.read)
		}
	case <-time.After(testTimeout):
		t.Fatal("ReadUntil did not return once its frame was dispatched")
	}
	rawWrite(t, raw, frameBytes(t, wire.Header{Procedure: "/t.T/P", CallID: 2}, benchPayload))
	poll(t, "frame 2", func() bool { return seen.Load() == 2 })
	if !readerSaw.Load() {
		t.Error("frame 2 was not dispatched by the reader goroutine")
	}
}

// TestReadUntilPeerClosed: the end of the stream, found by a caller that
// holds the role, ends the link with ErrPeerClosed and ends the caller's
// spin at once (an hour long here), and the reader goroutine returns.
func TestReadUntilPeerClosed(t *testing.T) {
	checkLeaks(t)
	l, raw := rawPair(t, discard)
	res := make(chan bool, 1)
	go func() {
		for !l.aborted.Load() {
			if _, read := l.ReadUntil(never, time.Hour); read {
				res <- true
				return
			}
		}
		res <- false
	}()
	waitCallerRole(t, l)
	unix.Shutdown(raw, unix.SHUT_WR) // the end of the stream
	select {
	case read := <-res:
		if !read {
			t.Fatal("the link ended without the caller reading")
		}
	case <-time.After(testTimeout):
		t.Fatal("a caller holding the role did not see the end of the stream")
	}
	waitDone(t, l)
	if err := l.Err(); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("Err() = %v, want ErrPeerClosed", err)
	}
}

// TestReadUntilProtocolError: bad input read by a caller ends the link
// with the protocol error, and the descriptors that came with it are
// closed (checkLeaks).
func TestReadUntilProtocolError(t *testing.T) {
	checkLeaks(t)
	l, raw := rawPair(t, discard, WithMaxFrameSize(1<<10))
	_, w := pipe(t)
	go func() {
		for !l.aborted.Load() {
			l.ReadUntil(never, time.Hour)
		}
	}()
	waitCallerRole(t, l)
	rawSendFDs(t, raw, be32(1<<20), int(w.Fd()))
	waitDone(t, l)
	if err := l.Err(); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("Err() = %v, want ErrFrameTooLarge", err)
	}
}

// TestReadUntilClose: a local Close while a caller spins ends the spin and
// the link.
func TestReadUntilClose(t *testing.T) {
	checkLeaks(t)
	l, _ := rawPair(t, discard)
	res := make(chan struct{})
	go func() {
		defer close(res)
		for !l.aborted.Load() {
			l.ReadUntil(never, time.Hour)
		}
	}()
	waitCallerRole(t, l)
	l.Close()
	select {
	case <-res:
	case <-time.After(testTimeout):
		t.Fatal("a caller spinning on a closed link did not return")
	}
	waitDone(t, l)
}

// TestReleaseOnCaller: a handler dispatched by a caller cannot release its
// frame (the caller is not a reader goroutine that could be promoted):
// Release returns 0 and Promote does nothing.
func TestReleaseOnCaller(t *testing.T) {
	checkLeaks(t)
	var lp atomic.Pointer[Link]
	var token atomic.Uint64
	var promoted, onCaller atomic.Bool
	var seen atomic.Int64
	h := func(env *wire.Envelope, files []*os.File) error {
		l := lp.Load()
		onCaller.Store(l.CallerReading())
		token.Store(l.Release())
		promoted.Store(l.Promote())
		seen.Add(1)
		return nil
	}
	l, raw := rawPair(t, h)
	lp.Store(l)
	res := readFirstFrame(l, &seen)
	waitCallerRole(t, l)
	rawWrite(t, raw, frameBytes(t, wire.Header{Procedure: "/t.T/P", CallID: 1}, benchPayload))
	if read := <-res; !read || !onCaller.Load() {
		t.Fatal("the frame was not dispatched by the caller")
	}
	if token.Load() != 0 || promoted.Load() {
		t.Fatalf("on a caller: Release = %d, Promote = %v; want 0, false", token.Load(), promoted.Load())
	}
}

// TestReadUntilHandBackReadsWhatWasAnnounced: bytes that arrive while a
// caller holds the role wake the reader goroutine, which finds the role
// taken and waits again; no new readiness will come for them. The caller,
// done before it read them, must read them before it gives the role back
// (rtEdge). Here the caller's own handler writes frame 2 and waits until
// the reader goroutine has seen it arrive (white-box: it watches rtEdge). It fails if the hand-back
// ignores rtEdge: frame 2 is then never dispatched.
func TestReadUntilHandBackReadsWhatWasAnnounced(t *testing.T) {
	checkLeaks(t)
	var lp atomic.Pointer[Link]
	var seen atomic.Int64
	var rawFD atomic.Int64
	frame2 := frameBytes(t, wire.Header{Procedure: "/t.T/P", CallID: 2}, benchPayload)
	h := func(env *wire.Envelope, files []*os.File) error {
		l := lp.Load()
		if env.CallID == 1 {
			if !l.CallerReading() {
				return errors.New("frame 1 dispatched by the reader goroutine")
			}
			// Frame 1's own arrival may have woken the reader
			// goroutine too (only if the netpoller looked before the
			// caller read it): forget that (as the hand-back does
			// before it reads), so that the edge waited for is frame
			// 2's, which stays unread until the hand-back.
			l.rtok.Store(rtCaller)
			if _, err := unix.Write(int(rawFD.Load()), frame2); err != nil {
				return err
			}
			deadline := time.Now().Add(testTimeout)
			for l.rtok.Load()&rtEdge == 0 {
				if time.Now().After(deadline) {
					return errors.New("the reader goroutine was not woken by frame 2")
				}
				goruntime.Gosched()
			}
		}
		seen.Add(1)
		return nil
	}
	l, raw := rawPair(t, h)
	lp.Store(l)
	rawFD.Store(int64(raw))
	res := readFirstFrame(l, &seen)
	waitCallerRole(t, l)
	rawWrite(t, raw, frameBytes(t, wire.Header{Procedure: "/t.T/P", CallID: 1}, benchPayload))
	if read := <-res; !read || l.aborted.Load() {
		t.Fatalf("frame 1 was not read by the caller; link error %v", l.Err())
	}
	poll(t, "frame 2 dispatched", func() bool { return seen.Load() == 2 || l.aborted.Load() })
	if err := l.Err(); err != nil {
		t.Fatalf("link ended: %v", err)
	}
}

// TestReadUntilPeerFloods: a peer that keeps the socket full cannot keep a
// caller reading: a caller whose call is over while the peer floods gives
// the role back after a bounded number of reads (waking the reader
// goroutine), and the reader goroutine dispatches what follows. Each
// frame's handler takes a few microseconds, so the socket never runs empty
// while the peer writes. It fails if the hand-back reads on while frames
// keep coming (the wait for the caller's return times out), or if the
// frames after it are not dispatched.
func TestReadUntilPeerFloods(t *testing.T) {
	checkLeaks(t)
	var seen atomic.Int64
	h := func(env *wire.Envelope, files []*os.File) error {
		for start := time.Now(); time.Since(start) < 3*time.Microsecond; {
		}
		seen.Add(1)
		return nil
	}
	l, raw := rawPair(t, h)
	var chunk []byte
	for id := uint64(1); id <= 200; id++ {
		chunk = append(chunk, frameBytes(t, wire.Header{Procedure: "/t.T/P", CallID: id}, benchPayload)...)
	}
	// The caller is done after its first frame (its reply), read in the
	// middle of the flood.
	res := readFirstFrame(l, &seen)
	waitCallerRole(t, l)
	stop := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := unix.Write(raw, chunk); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-wrote }()
	select {
	case read := <-res:
		if !read {
			t.Fatal("the caller did not read")
		}
	case <-time.After(testTimeout):
		t.Fatal("a caller whose call was over kept reading a flooded link")
	}
	n := seen.Load()
	poll(t, "frames dispatched after the caller returned", func() bool { return seen.Load() > n+1000 })
}
