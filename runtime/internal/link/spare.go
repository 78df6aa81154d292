package link

import "sync"

// Reusing the buffers of large frames.
//
// A frame larger than the read buffer is read into a buffer of its own
// (makeRoom), which its handler may keep (wire.Envelope.Kept). A buffer the
// handler did not keep, or kept and gave back once done with it (Recycle),
// is the link's spare: the next large frame is read into it instead of a
// freshly allocated (and zeroed) one. Allocating a fresh megabyte per large
// frame is what a stream of large messages costs most: zeroing, page
// faults, and a garbage collection cycle every few frames.
//
// The link holds at most one spare, whatever the peer sends and however
// many buffers are given back: a buffer given back while the spare is
// taken by an equal or larger one is left to the garbage collector, and
// the spare itself is dropped after shrinkAfter reads without a large
// frame. A large frame's buffer is at most the maximum frame size plus the
// prefix (WithMaxFrameSize), so a link holds at most two of them: the one
// being read into and its spare.

// spareBuffer is a link's spare large-frame buffer. The reader takes and
// puts it; Recycle puts it from any goroutine.
type spareBuffer struct {
	mu sync.Mutex
	b  []byte
}

// take returns the spare, resliced to n bytes, if it holds n bytes; nil
// otherwise. A spare too small for n is dropped: the frame's own buffer,
// larger, will take its place.
func (s *spareBuffer) take(n int) []byte {
	s.mu.Lock()
	b := s.b
	s.b = nil
	s.mu.Unlock()
	if cap(b) < n {
		return nil
	}
	return b[:n]
}

// put offers b as the spare: it is kept unless the spare already holds as
// many bytes, or is the same buffer.
func (s *spareBuffer) put(b []byte) {
	if cap(b) == 0 {
		return
	}
	s.mu.Lock()
	if cap(b) > cap(s.b) {
		s.b = b
	}
	s.mu.Unlock()
}

// drop lets the spare go.
func (s *spareBuffer) drop() {
	s.mu.Lock()
	s.b = nil
	s.mu.Unlock()
}

// Recycle gives back the buffer of a large frame whose handler kept it
// (wire.Envelope.Owned, with Envelope.Kept set): the link may read a later
// large frame into it. Call it once nothing reads or writes the buffer any
// more, and at most once per frame: a buffer given back while still in use
// is overwritten under its user, and one given back twice can be handed to
// two frames at once.
//
// A kept buffer that is never given back is not a leak: it is garbage once
// its users let it go, and the next large frame gets a fresh one. Recycle
// never makes the link hold more than one spare buffer (see spare.go); it
// is safe for concurrent use, also after the link has ended.
func (l *Link) Recycle(b []byte) {
	l.lspare.put(b)
}
