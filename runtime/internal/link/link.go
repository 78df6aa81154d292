package link

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// MaxFDsPerFrame is the most file descriptors one frame can carry: Linux's
// SCM_MAX_FD, the limit of one SCM_RIGHTS control message.
const MaxFDsPerFrame = 253

const (
	defaultWriteBufferLimit = 4 << 20
	defaultReadBufferSize   = 64 << 10
	minReadBufferSize       = 512
	// initialWriteBufferSize is the capacity of each of the two write
	// buffers to start with; they grow with the traffic.
	initialWriteBufferSize = 64 << 10
	// shrinkAfter is how many consecutive small reads (or writes) a grown
	// buffer survives before it is given back.
	shrinkAfter = 64
)

// ErrLinkClosed reports a link that has ended. Err returns it as is after a
// local Close, Abort(nil) or Shutdown; Send returns it, or an error wrapping
// it and the link's cause, once the link is closed or shutting down.
var ErrLinkClosed = errors.New("herd: link closed")

// ErrPeerClosed is the cause of a link whose peer closed its end between two
// frames (or reset the connection). It matches both io.EOF and
// ErrLinkClosed with errors.Is. A peer that closes in the middle of a frame
// is a *wire.ProtocolError wrapping io.ErrUnexpectedEOF instead.
var ErrPeerClosed = fmt.Errorf("%w by peer: %w", ErrLinkClosed, io.EOF)

// ErrSendInFlight is wrapped (with the context's error) by a Send of a frame
// with descriptors whose context ended after the writer had already taken
// the frame: the frame can no longer be withdrawn and may still reach the
// peer, with the descriptors (the link sends private duplicates, so the
// caller may close its own). When the frame was withdrawn before any byte
// of it was written, Send's error wraps only the context's error.
var ErrSendInFlight = errors.New("herd: frame already being written")

// ErrUnclaimedFDs is the cause (inside a *wire.ProtocolError, so test with
// errors.Is) of a link ended because descriptors arrived that no frame
// claims: more than the frame they came with declares in its FDCount, or
// with bytes in which no frame starts. The reader closes them at once (see
// the package documentation, "Descriptors").
var ErrUnclaimedFDs = errors.New("herd: file descriptors no frame claims")

// ErrNotSupported is returned by Pair and New on systems without links
// (anything but Linux and macOS).
var ErrNotSupported = errors.New("herd: links are not supported on " + goruntime.GOOS)

// Handler receives the frames read from a link. It is called on the link's
// reader goroutine, one frame at a time, in the order the frames were sent.
//
// env aliases the link's read buffer and is valid only during the call:
// decode the payload, or copy what must be kept, before returning. The
// exception is a frame larger than the read buffer, which arrives in a
// buffer of its own (env.Owned): a handler that sets env.Kept may keep its
// slices, and the link gives the buffer up (wire.UnmarshalPayload does
// this when the message it decodes shares the buffer). files
// holds the descriptors received with the frame: env.FDCount of them, less
// env.FDsLost, which is not zero only when this side's kernel could not
// install them all (MSG_CTRUNC, see there); the files then are the first
// ones the peer sent. Their ownership passes to the handler, which must
// close them (the slice itself is reused after the call; the *os.File
// values are the handler's).
//
// While the handler runs the link reads nothing more, which is how a busy
// receiver pushes back on its peer, unless the handler calls Release and
// someone then calls Promote (a handler that may run long: see there). A
// non-nil return ends the link with that error (wrapped; test with
// errors.Is).
//
// env.KnownProcedure, when set, says that env.Procedure equals the
// procedure of the last frame with a non-empty procedure that the link
// handed to the handler: a handler that keeps something per procedure
// (the handler it looked up) may reuse it without comparing names.
type Handler func(env *wire.Envelope, files []*os.File) error

// Option configures New.
type Option interface {
	apply(*config)
}

type config struct {
	maxFrame    int
	writeLimit  int
	readBufSize int
	// credit gates credited frames on the peer's grants (WithCredit);
	// onCreditWait is called when a sender starts waiting for credit.
	credit       bool
	onCreditWait func()
	// noFDs refuses descriptors in both directions (WithoutFDs).
	noFDs bool
	// readIdle, when set, is called by the reader once it has dispatched
	// every whole frame it has buffered (WithReadIdle).
	readIdle func()
	// beforeBatch, when set (tests only), is called by the writer
	// goroutine after it has taken a batch of queued frames and before it
	// writes them.
	beforeBatch func()
	// writerWait, when set (tests only), is called by the writer goroutine
	// before it waits to be woken (false) and once woken, before it looks
	// at the queue (true).
	writerWait func(woken bool)
	// lingerDelay is stream.go's lingerDelay (tests change it).
	lingerDelay time.Duration
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithMaxFrameSize sets the largest envelope, in bytes (the length prefix
// not counted), that the link sends or accepts. Send returns
// wire.ErrFrameTooLarge for a larger frame and leaves the link as it was; a
// peer announcing a larger frame ends the link with wire.ErrFrameTooLarge.
// The default is wire.DefaultMaxFrameSize (16 MiB). Both ends of a link
// should use the same value.
func WithMaxFrameSize(n int) Option {
	return optionFunc(func(c *config) { c.maxFrame = n })
}

// WithReadIdle sets a function that the reader goroutine calls each time
// it has handed every whole frame of its buffer to the handler, before it
// reads the socket again (and so perhaps waits), and once more as it
// leaves when the link ends. A handler that collects the frames of one
// read (to pass them on as a batch) flushes them there. It is called only
// by the goroutine that holds the reader role (see Release and Promote),
// never concurrently with the handler on that goroutine; like the handler,
// while it runs the link reads nothing.
func WithReadIdle(fn func()) Option {
	return optionFunc(func(c *config) { c.readIdle = fn })
}

// WithoutFDs makes a link that carries no file descriptors, for a
// connected stream socket whose peer is not a process the primary started
// (the admin socket's clients): a Send with descriptors is refused, and
// descriptors the peer sends end the link with a *wire.ProtocolError
// wrapping ErrFDsRefused, closed at once without reaching the handler.
func WithoutFDs() Option {
	return optionFunc(func(c *config) { c.noFDs = true })
}

// ErrFDsRefused is the cause (inside a *wire.ProtocolError) of a link built
// WithoutFDs whose peer sent file descriptors, and the error of a Send with
// descriptors on such a link.
var ErrFDsRefused = errors.New("herd: this link carries no file descriptors")

// WithWriteBufferLimit sets how many encoded bytes may wait in the write
// queue: Send blocks while the queue holds n bytes or more, until the
// writer drains it or the context ends. A single frame may take the queue
// past the limit, so frames larger than n can still be sent. Besides the
// queue, the writer holds the batch it is writing (at most the same amount
// again). The default is 4 MiB.
func WithWriteBufferLimit(n int) Option {
	return optionFunc(func(c *config) { c.writeLimit = n })
}

// WithReadBufferSize sets the size of the read buffer (default 64 KiB, at
// least 512 bytes), into which frames are read and from which the handler
// gets them. A larger frame is read into a buffer of its own, as large as
// the frame (at most the maximum frame size plus the prefix), which the
// handler may keep (Envelope.Owned, Envelope.Kept). One that is not kept,
// or that its handler gives back (Recycle), serves the next large frame,
// and is let go once large frames stop arriving. The read buffer keeps its
// size.
func WithReadBufferSize(n int) Option {
	return optionFunc(func(c *config) { c.readBufSize = n })
}

// newConfig applies opts to the defaults and checks the result.
func newConfig(opts []Option) (config, error) {
	c := config{
		maxFrame:    wire.DefaultMaxFrameSize,
		writeLimit:  defaultWriteBufferLimit,
		readBufSize: defaultReadBufferSize,
		lingerDelay: lingerDelay,
	}
	for _, o := range opts {
		o.apply(&c)
	}
	const maxUint32 = 1<<32 - 1
	switch {
	case c.maxFrame <= 0 || uint64(c.maxFrame) > maxUint32-wire.PrefixSize:
		return c, fmt.Errorf("herd: link: max frame size %d out of range", c.maxFrame)
	case c.writeLimit <= 0:
		return c, fmt.Errorf("herd: link: write buffer limit %d must be positive", c.writeLimit)
	case c.readBufSize <= 0:
		return c, fmt.Errorf("herd: link: read buffer size %d must be positive", c.readBufSize)
	}
	c.readBufSize = min(max(c.readBufSize, minReadBufferSize), c.maxFrame+wire.PrefixSize)
	return c, nil
}

// Stats are a link's counters since New. Each is read atomically, but not
// all at the same instant.
type Stats struct {
	// FramesSent counts frames completely written to the socket.
	FramesSent uint64
	// FramesReceived counts frames decoded and handed to the handler.
	FramesReceived uint64
	// BytesSent and BytesReceived count bytes through the socket,
	// length prefixes included.
	BytesSent, BytesReceived uint64
	// Writes counts write(2) and sendmsg(2) calls, including those that
	// found the socket full (EAGAIN).
	Writes uint64
	// Reads counts recvmsg(2) calls, including those that found nothing
	// to read (EAGAIN).
	Reads uint64
}

// fdFrame is a queued frame that carries file descriptors.
type fdFrame struct {
	off, n int     // the frame's bytes within its buffer (pending, then the writer's batch)
	fds    []int   // descriptors to attach; the caller's until owned is set
	owned  bool    // fds are duplicates owned by the link (the sender gave up waiting)
	sent   bool    // sendmsg carrying fds has completed
	w      *waiter // the waiting sender, nil once told or gone
	mark   bool    // no descriptors: a SendSync frame, whose sender waits until it is written
}

// fdBatch is the descriptors one recvmsg returned, with the stream offsets
// of the bytes it returned: the frame they were sent with starts in
// [start, end) (see "Descriptors" in the package documentation).
type fdBatch struct {
	n          int    // descriptors of the batch still queued in fdq
	start, end uint64 // stream offsets of the bytes of that recvmsg
	lost       bool   // MSG_CTRUNC: the kernel could not install them all
}

// waiter carries the result of a descriptor frame's sendmsg to its sender.
type waiter struct{ ch chan error }

var waiters = sync.Pool{New: func() any { return &waiter{ch: make(chan error, 1)} }}

// Link is one end of a herd link. It is safe for concurrent use.
type Link struct {
	cfg     config
	conn    *net.UnixConn
	rc      syscall.RawConn
	handler Handler

	mu            sync.Mutex
	pending       []byte    // encoded frames waiting for the writer
	pendingFDs    []fdFrame // frames in pending that carry descriptors
	pendingFrames int
	spare         []byte    // the writer's other buffer
	spareFDs      []fdFrame //
	inflight      []fdFrame // descriptor frames of the batch being written
	sendErr       error     // non-nil once Send must refuse frames
	draining      bool      // Shutdown: the writer closes the link once pending is empty
	writing       bool      // the writer goroutine or a direct sender is writing a batch
	carry         []byte    // what a direct write left unwritten; written before pending
	carryBuf      []byte    // the buffer carry is in, to recycle
	carryFrames   int       // frames that end in carry
	flushed       bool      // the writer drained everything before closing
	cause         error     // why the link ended; set once
	spaceCh       chan struct{}
	credit        creditState // the peer's grants (WithCredit)
	lastProc      string      // the procedure of the last frame encoded, valid UTF-8
	streaming     bool        // a sender writes its own batches (stream.go)
	lingering     bool        // pending holds frames no wake-up was sent for (stream.go)
	linger        *time.Timer // wakes the writer for them (stream.go)

	wake       chan struct{} // writer wake-up, capacity 1
	quit       chan struct{} // closed when the link is aborted
	connClosed chan struct{} // closed once the socket is closed
	done       chan struct{} // closed once both goroutines have returned and the socket is closed
	running    atomic.Int32  // goroutines still running
	aborted    atomic.Bool

	framesSent, framesReceived atomic.Uint64
	bytesSent, bytesReceived   atomic.Uint64
	writes, reads              atomic.Uint64

	// Writer goroutine state.
	wbuf       []byte   // bytes the current write callback still has to write
	wrec       *fdFrame // the descriptor frame of the current sendmsg
	wn         int      // bytes written by the current sendmsg
	werr       error    // error from the current write callback
	woob       []byte   // control message buffer for sendmsg
	writeFn    func(fd uintptr) bool
	directFn   func(fd uintptr) bool
	writevFn   func(fd uintptr) bool
	wvec       [][]byte  // what the current writev callback still has to write
	wvecs      [3][]byte // wvec's storage
	sendmsgFn  func(fd uintptr) bool
	smallWrite int // consecutive batches far below the buffers' capacity

	// sendmsgNow's callback (SendBorrowedNow, SendOwnedNow).
	sendmsgNowFn func(fd uintptr) bool

	// Reader goroutine state.
	rbuf      []byte      // read buffer; unread bytes are rbuf[r:w]
	small     []byte      // the read buffer, set aside while rbuf is a large frame's own buffer
	lspare    spareBuffer // a large frame's buffer to reuse (spare.go); shared with Recycle
	largeIdle int         // reads since the last large frame, up to shrinkAfter
	r, w      int
	roob      []byte // control message buffer for recvmsg
	rn, roobn int    // results of the last recvmsg
	rflags    int
	rerr      error
	readFn    func(fd uintptr) bool
	recv      receiver
	fdq       []int      // received descriptors not yet claimed by a frame
	batches   []fdBatch  // where the descriptors of fdq arrived, oldest first
	rpos      uint64     // stream offset of rbuf[w]: bytes received so far
	files     []*os.File // reused for each frame's descriptors
	env       wire.Envelope
	rproc     []byte // the last non-empty procedure decoded (checked valid UTF-8), at most maxKnownProc bytes
	rframe    int    // size of the frame being dispatched, until consumed

	// rstate is the reader role (Release, Promote): a generation that
	// moves on with every Release and Promote, and the reader's phase
	// (see rsGenShift).
	rstate atomic.Uint64
	// rtok says who reads: the reader goroutine, or a caller reading for
	// its reply (caller_read.go).
	rtok      atomic.Uint32
	tryReadFn func(fd uintptr) // tryRead's RawConn.Control callback
	rgot      bool             // tryRead's recvmsg read something
}

// Send queues one frame: h, with payload (which may be nil) encoded straight
// into the link's write queue in the caller's goroutine, and fds, which
// travel as SCM_RIGHTS. Send sets h.FDCount to len(fds).
//
// A frame without descriptors is only queued: Send returns as soon as the
// frame is in the queue, and the writer sends it (coalesced with other
// queued frames) unless the link ends first. A frame with descriptors is
// waited for: Send returns once the sendmsg that carries the descriptors
// has completed, after which the caller may close its copies. The
// descriptors must stay open until then.
//
// Send blocks while the write queue is full (see WithWriteBufferLimit)
// until there is room or ctx ends; the error then wraps ctx.Err() and
// nothing was queued. If ctx ends while a descriptor frame is queued but
// not yet taken by the writer, the frame is withdrawn and the error wraps
// ctx.Err(); if the writer already has it, the error also wraps
// ErrSendInFlight (see there).
//
// On a link built WithCredit, a credited frame (a request) first waits for
// the peer's credit, in order with other waiting senders; if ctx ends
// meanwhile the error wraps ctx.Err() and nothing was queued.
//
// A frame larger than the maximum frame size is refused with an error
// wrapping wire.ErrFrameTooLarge; more than MaxFDsPerFrame descriptors, a
// negative or closed descriptor, or a payload that fails to marshal are
// refused too, and the link is unaffected. After the link is closed or
// shutting down, Send returns ErrLinkClosed (or an error wrapping it and
// the link's cause).
func (l *Link) Send(ctx context.Context, h *wire.Header, payload proto.Message, fds []int) error {
	return l.send(ctx, h, payload, nil, fds)
}

// SendBytes is Send with a payload that is already encoded.
func (l *Link) SendBytes(ctx context.Context, h *wire.Header, payload []byte, fds []int) error {
	return l.send(ctx, h, nil, payload, fds)
}

// SendDirect is Send, without descriptors, for a caller that is about to
// wait for the peer (a request/response call, or the reply to one): when
// nothing is queued and no write is under way, it writes the frame itself,
// with non-blocking write(2) calls on the caller's goroutine, instead of
// waking the writer goroutine. That saves a goroutine hand-off, and often
// a thread wake-up, on the latency path. What the socket does not take at
// once is left to the writer, ahead of any frame queued later, so frames
// keep their order and SendDirect never waits for the peer to read.
// Otherwise (something queued, a write under way) it queues the frame as
// Send does, so that frames sent in a burst are still coalesced.
//
// A write error ends the link, as it would in the writer; SendDirect then
// returns nil, like Send for a frame the link ends under.
func (l *Link) SendDirect(ctx context.Context, h *wire.Header, payload proto.Message) error {
	return l.sendFrame(ctx, h, payload, nil, nil, true)
}

// SendDirectSplit is SendDirect that also spares a large payload a copy:
// when the frame is written at once, a singular bytes field of
// wire.SplitMinSize bytes or more goes from the message to the socket with
// writev(2) (wire.AppendFrameSplit), and only what the socket does not take
// is copied, for the writer, before SendDirectSplit returns. The caller
// may change its message, or reuse the memory its field points to, once
// SendDirectSplit returns.
//
// It pays for a process that does not allocate per large message (borrowed
// buffers, see the runtime's WithBorrowedRequests). Otherwise SendDirect's
// copy into the write buffer costs less than it seems: the write buffer,
// grown to the message's size and kept, raises the garbage collector's heap
// target, and a process that allocates a megabyte per received message runs
// fewer collections with it than without it (measured: BenchmarkRoundTrip1MiB).
func (l *Link) SendDirectSplit(ctx context.Context, h *wire.Header, payload proto.Message) error {
	return l.sendFrameSplit(ctx, h, payload, nil, nil, true, true)
}

// SendOwned queues one frame whose descriptors the link takes over: it
// returns as soon as the frame is queued, without waiting for the sendmsg,
// and the link closes fds once they have been sent, or when the link ends
// before that. It never blocks: it ignores the write-queue limit, so the
// caller must bound how many such frames it queues (they are meant for
// small control frames such as connection hand-offs).
//
// On error nothing was queued and fds are still the caller's. Send's other
// rules apply (size, descriptor count and validity, closed link).
func (l *Link) SendOwned(h *wire.Header, payload proto.Message, fds []int) error {
	return l.sendAsync(h, payload, fds, true)
}

// SendBorrowed is SendOwned for descriptors the caller keeps: the link
// neither waits for the sendmsg nor closes them. The caller must keep them
// open until it has called Detach for them, or the link has ended (Done is
// closed): the link uses them until then, and never after. A peer's
// answer alone is not proof that the frame was written (the peer may lie);
// Detach is, and costs nothing when the frame was indeed written.
func (l *Link) SendBorrowed(h *wire.Header, payload proto.Message, fds []int) error {
	return l.sendAsync(h, payload, fds, false)
}

// Detach ends the link's use of the caller's copies of fds, descriptors
// it lent to SendBorrowed: once Detach returns, the caller may close them
// or send them elsewhere, and the peer still receives exactly the
// connections its frames were sent with.
//
// A borrowed frame already written (its sendmsg completed) needs nothing:
// the kernel holds its own reference until the peer receives it. That is
// the honest case, where the caller detaches descriptors the peer has
// reported receiving, and Detach then costs one scan of the (usually
// empty) descriptor queue. A borrowed frame still queued, or in the batch
// being written but not yet sent, that carries any of fds gets duplicates
// of all its descriptors, owned by the link (closed once sent or when the
// link ends): a peer that reports descriptors before it could have
// received them (a buggy or lying worker) thus cannot make the link send
// a descriptor number that the caller has closed and the kernel has given
// to something else.
//
// If a duplicate cannot be made (out of descriptors), Detach ends the link
// with an error wrapping the cause before it returns, so that the frame is
// never sent. After the link has ended Detach does nothing: the link never
// uses borrowed descriptors after it ended.
func (l *Link) Detach(fds []int) {
	if len(fds) == 0 {
		return
	}
	l.mu.Lock()
	if l.cause != nil {
		l.mu.Unlock()
		return
	}
	err := detachFrames(l.pendingFDs, fds)
	if err == nil {
		err = detachFrames(l.inflight, fds)
	}
	l.mu.Unlock()
	if err != nil {
		l.abort(fmt.Errorf("herd: link: detaching borrowed descriptors: %w", err))
	}
}

// detachFrames gives each unsent borrowed frame of recs that carries one of
// fds its own duplicates. Called with l.mu held (the writer reads rec.fds
// and rec.owned under it, just before the sendmsg).
func detachFrames(recs []fdFrame, fds []int) error {
	for i := range recs {
		rec := &recs[i]
		if rec.sent || rec.owned || rec.mark || rec.w != nil || len(rec.fds) == 0 || !slices.ContainsFunc(rec.fds, func(fd int) bool { return slices.Contains(fds, fd) }) {
			continue
		}
		dups, err := dupFDs(rec.fds)
		if err != nil {
			return err
		}
		rec.fds, rec.owned = dups, true
	}
	return nil
}

// sendHeader checks a queued send of fds and returns the header to send
// (h, or a new one when nil) with its descriptor count set.
func (l *Link) sendHeader(h *wire.Header, fds []int) (*wire.Header, error) {
	if len(fds) > 0 && l.cfg.noFDs {
		return nil, fmt.Errorf("herd: link send: %w", ErrFDsRefused)
	}
	if len(fds) > MaxFDsPerFrame {
		return nil, fmt.Errorf("herd: link send: %d file descriptors in one frame, at most %d", len(fds), MaxFDsPerFrame)
	}
	if h == nil {
		h = new(wire.Header)
	}
	if l.credited(h) {
		return nil, fmt.Errorf("herd: link send: a credited frame cannot be sent without waiting for credit")
	}
	h.FDCount = uint32(len(fds))
	return h, nil
}

func (l *Link) sendAsync(h *wire.Header, payload proto.Message, fds []int, owned bool) error {
	h, err := l.sendHeader(h, fds)
	if err != nil {
		return err
	}
	l.mu.Lock()
	off, wasEmpty, err := l.queueLocked(h, payload)
	if err != nil {
		return err
	}
	if len(fds) > 0 {
		// The caller may reuse its slice.
		own := append([]int(nil), fds...)
		l.pendingFDs = append(l.pendingFDs, fdFrame{off: off, n: len(l.pending) - off, fds: own, owned: owned})
	}
	l.mu.Unlock()
	if wasEmpty {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// queueLocked appends one frame to the write queue, for the senders that
// never wait for room (SendOwned, SendBorrowed, SendSync): it returns the
// frame's offset in the queue and whether the queue was empty before. It is
// called with l.mu held; on error (the link refuses frames, or the frame
// does not encode) it releases l.mu and nothing was queued.
func (l *Link) queueLocked(h *wire.Header, payload proto.Message) (off int, wasEmpty bool, err error) {
	off, wasEmpty, err = l.appendLocked(h, payload, nil)
	if err != nil {
		l.mu.Unlock()
		return 0, false, err
	}
	l.pendingFrames++
	l.endLingerLocked() // not delayed by a stream (stream.go)
	return off, wasEmpty, nil
}

// appendLocked encodes one frame, of msg or else of the encoded payload
// raw, at the end of the write queue, the step every sender shares: it
// returns the frame's offset in the queue and whether the queue was empty
// before. The caller counts the frame (pendingFrames) once it keeps it. It
// is called with l.mu held, which it keeps; on error (the link refuses
// frames, or the frame does not encode) nothing was appended.
func (l *Link) appendLocked(h *wire.Header, msg proto.Message, raw []byte) (off int, wasEmpty bool, err error) {
	if l.sendErr != nil {
		return 0, false, l.sendErr
	}
	wasEmpty = len(l.pending) == 0
	off = len(l.pending)
	// The last procedure encoded is known to be valid UTF-8: the same
	// string again (usually the very same constant: == then compares
	// pointers) is not checked again.
	h.ProcedureValid = h.Procedure != "" && h.Procedure == l.lastProc
	if msg != nil {
		l.pending, err = wire.AppendFrame(l.pending, h, msg, l.cfg.maxFrame)
	} else {
		l.pending, err = wire.AppendFrameBytes(l.pending, h, raw, l.cfg.maxFrame)
	}
	if err == nil {
		l.lastProc = h.Procedure
	}
	return off, wasEmpty, err
}

// SendSync sends a frame without descriptors and returns once all of it
// has been written to the socket, so that the peer reads it even if this
// process dies the next instant (the kernel delivers what a dead process
// wrote before the end of the stream). When nothing is queued and no write
// is under way it writes the frame on the caller's goroutine, waiting on
// the netpoller while the socket is full; otherwise it queues the frame
// and waits for the writer. It ignores the write-queue limit (it is meant
// for small control frames) and fails only when the link ends first, with
// an error wrapping ErrLinkClosed.
func (l *Link) SendSync(h *wire.Header, payload proto.Message) error {
	if h == nil {
		h = new(wire.Header)
	}
	h.FDCount = 0
	l.mu.Lock()
	off, wasEmpty, err := l.queueLocked(h, payload)
	if err != nil {
		return err
	}
	if wasEmpty && !l.writing && l.carry == nil {
		return l.writeSync() // unlocks l.mu
	}
	w := waiters.Get().(*waiter)
	l.pendingFDs = append(l.pendingFDs, fdFrame{off: off, n: len(l.pending) - off, w: w, mark: true})
	l.mu.Unlock()
	if wasEmpty {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	err = <-w.ch
	waiters.Put(w)
	return err
}

// writeSync writes the pending frames, which carry no descriptors, on the
// calling goroutine, all of them, waiting while the socket is full. It is
// called with l.mu held and l.writing false, and returns with l.mu
// released.
func (l *Link) writeSync() error {
	batch, frames := l.pending, l.pendingFrames
	l.pending, l.pendingFrames = l.spare, 0
	l.spare = nil
	l.writing = true
	l.mu.Unlock()

	err := l.write(batch)

	l.mu.Lock()
	l.writing = false
	wake := len(l.pending) > 0 || l.draining
	if err != nil {
		l.spare = batch[:0]
	} else {
		l.spare = l.recycle(batch)
	}
	l.mu.Unlock()
	if err != nil {
		l.abort(err)
		l.mu.Lock()
		err = l.sendErr
		l.mu.Unlock()
		return err
	}
	l.framesSent.Add(uint64(frames))
	if wake {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (l *Link) send(ctx context.Context, h *wire.Header, msg proto.Message, raw []byte, fds []int) error {
	return l.sendFrame(ctx, h, msg, raw, fds, false)
}

func (l *Link) sendFrame(ctx context.Context, h *wire.Header, msg proto.Message, raw []byte, fds []int, direct bool) error {
	return l.sendFrameSplit(ctx, h, msg, raw, fds, direct, false)
}

// sendFrameSplit is sendFrame; split lets a direct write send a large bytes
// field from the message itself (SendDirectSplit).
func (l *Link) sendFrameSplit(ctx context.Context, h *wire.Header, msg proto.Message, raw []byte, fds []int, direct, split bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("herd: link send: %w", err)
	}
	if len(fds) > 0 {
		if l.cfg.noFDs {
			return fmt.Errorf("herd: link send: %w", ErrFDsRefused)
		}
		if len(fds) > MaxFDsPerFrame {
			return fmt.Errorf("herd: link send: %d file descriptors in one frame, at most %d", len(fds), MaxFDsPerFrame)
		}
		if err := checkFDs(fds); err != nil {
			return fmt.Errorf("herd: link send: %w", err)
		}
	}
	if h == nil {
		h = new(wire.Header)
	}
	h.FDCount = uint32(len(fds))
	credited := l.credited(h)
	reserved := int64(-1) // credit reserved by waitCredit, in bytes

	l.mu.Lock()
encode:
	for l.sendErr == nil && len(l.pending) >= l.cfg.writeLimit {
		ch := l.spaceCh
		if ch == nil {
			ch = make(chan struct{})
			l.spaceCh = ch
		}
		l.endLingerLocked() // the writer makes the room
		l.mu.Unlock()
		l.Promote() // a handler waiting here must not hold up the reader
		select {
		case <-ch:
		case <-ctx.Done():
			if reserved >= 0 {
				l.mu.Lock()
				l.returnCreditLocked(reserved)
				l.mu.Unlock()
			}
			return fmt.Errorf("herd: link send: write queue full: %w", ctx.Err())
		}
		l.mu.Lock()
	}
	var ext []byte // a large bytes field the frame leaves out of l.pending (direct writes only)
	var at int     // where ext belongs in l.pending
	var off int
	var wasEmpty bool
	var err error
	if split && direct && msg != nil && l.idleLocked() {
		// Written now, on this goroutine: a large bytes field can go
		// from the caller's message to the socket without a copy.
		off, wasEmpty = 0, true
		l.pending, ext, at, err = wire.AppendFrameSplit(l.pending, h, msg, l.cfg.maxFrame)
	} else {
		off, wasEmpty, err = l.appendLocked(h, msg, raw)
	}
	if err != nil {
		if reserved >= 0 {
			l.returnCreditLocked(reserved)
		}
		l.mu.Unlock()
		return err
	}
	if credited {
		n := int64(len(l.pending) - off + len(ext))
		switch {
		case reserved >= 0:
			// Reserved by a wait for the same frame; a message changed
			// in between is charged at its new size.
			l.credit.bytes -= n - reserved
		case !l.takeCreditLocked(n):
			l.pending = l.pending[:off]
			if l.lingering && len(l.pending) > 0 && !l.writing && l.carry == nil && len(l.pendingFDs) == 0 {
				// Streaming (stream.go): what this sender queued goes
				// out before it waits, written here; then the frame
				// is queued again.
				l.lingering = false
				l.writeNow(nil, 0) // unlocks l.mu
				l.mu.Lock()
				goto encode
			}
			l.endLingerLocked()
			if err := l.waitCredit(ctx, n); err != nil {
				return err
			}
			reserved = n
			l.mu.Lock()
			goto encode
		}
	}
	l.pendingFrames++
	if direct && wasEmpty && !l.writing && l.carry == nil {
		l.writeNow(ext, at) // unlocks l.mu
		return nil
	}
	if !direct && len(fds) == 0 {
		if l.streamLocked(wasEmpty) {
			return nil // l.mu released
		}
	} else {
		l.endLingerLocked()
	}
	var w *waiter
	if len(fds) > 0 {
		w = waiters.Get().(*waiter)
		l.pendingFDs = append(l.pendingFDs, fdFrame{off: off, n: len(l.pending) - off, fds: fds, w: w})
	}
	l.mu.Unlock()
	if wasEmpty {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	if w == nil {
		return nil
	}
	select {
	case err := <-w.ch:
		waiters.Put(w)
		return err
	case <-ctx.Done():
		return l.cancelFDFrame(ctx, w)
	}
}

// idleLocked reports, with l.mu held, whether a frame sent now could be
// written at once by its sender: nothing is queued or being written, and
// the link takes frames.
func (l *Link) idleLocked() bool {
	return len(l.pending) == 0 && !l.writing && l.carry == nil && l.sendErr == nil
}

// writeNow writes the pending frames, which carry no descriptors, on the
// calling goroutine, without waiting for the socket; what it does not take
// becomes the carry, for the writer. When ext is not nil the pending bytes
// are one frame whose bytes ext belong at offset at (wire.AppendFrameSplit):
// the three parts go out with writev(2), and what the socket does not take
// of them is copied for the writer, since ext is the caller's and may
// change once the caller returns. It is called with l.mu held, and
// l.writing false, and returns with l.mu released.
func (l *Link) writeNow(ext []byte, at int) {
	batch, frames := l.pending, l.pendingFrames
	l.pending, l.pendingFrames = l.spare, 0
	l.spare = nil
	l.writing = true
	l.mu.Unlock()

	var n int
	var err error
	if ext == nil {
		n, err = l.writeDirect(batch)
	} else {
		n, err = l.writevDirect(batch[:at], ext, batch[at:])
	}
	total := len(batch) + len(ext)

	l.mu.Lock()
	l.writing = false
	wake := len(l.pending) > 0 || l.draining
	switch {
	case err != nil:
		l.spare = batch[:0]
	case n < total && ext != nil:
		rest := appendUnwritten(make([]byte, 0, total-n), n, batch[:at], ext, batch[at:])
		l.carry, l.carryBuf, l.carryFrames = rest, rest, frames
		l.spare = l.recycle(batch)
		wake = true
	case n < total:
		l.carry, l.carryBuf, l.carryFrames = batch[n:], batch, frames
		wake = true
	default:
		l.spare = l.recycle(batch)
	}
	l.mu.Unlock()
	if err != nil {
		l.abort(err)
		return
	}
	if n == total {
		l.framesSent.Add(uint64(frames))
	}
	if wake {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// appendUnwritten appends to dst what remains of the concatenation of parts
// once its first n bytes are written.
func appendUnwritten(dst []byte, n int, parts ...[]byte) []byte {
	for _, p := range parts {
		k := min(n, len(p))
		n -= k
		dst = append(dst, p[k:]...)
	}
	return dst
}

// cancelFDFrame handles a descriptor frame whose sender's context ended
// before its sendmsg completed: withdraw the frame if the writer has not
// taken it yet, or else swap the caller's descriptors for duplicates so the
// caller may close its own while the writer still sends the frame.
func (l *Link) cancelFDFrame(ctx context.Context, w *waiter) error {
	l.mu.Lock()
	for i := range l.pendingFDs {
		rec := &l.pendingFDs[i]
		if rec.w != w {
			continue
		}
		l.pending = slices.Delete(l.pending, rec.off, rec.off+rec.n)
		for j := i + 1; j < len(l.pendingFDs); j++ {
			l.pendingFDs[j].off -= rec.n
		}
		l.pendingFDs = slices.Delete(l.pendingFDs, i, i+1)
		l.pendingFrames--
		l.mu.Unlock()
		waiters.Put(w)
		return fmt.Errorf("herd: link send: frame withdrawn: %w", ctx.Err())
	}
	for i := range l.inflight {
		rec := &l.inflight[i]
		if rec.w != w {
			continue
		}
		// rec.sent is false: the writer clears rec.w when it sets sent.
		dups, err := dupFDs(rec.fds)
		if err != nil {
			// The frame cannot be detached from the caller's
			// descriptors; stop the link rather than let the writer use
			// descriptors the caller is about to close.
			l.mu.Unlock()
			l.abort(fmt.Errorf("herd: link send: duplicating descriptors of a cancelled frame: %w", err))
			err := <-w.ch
			waiters.Put(w)
			return fmt.Errorf("herd: link send: %w (%w)", ctx.Err(), err)
		}
		rec.fds, rec.owned, rec.w = dups, true, nil
		l.mu.Unlock()
		waiters.Put(w)
		return fmt.Errorf("herd: link send: %w: %w", ErrSendInFlight, ctx.Err())
	}
	l.mu.Unlock()
	// The writer or abort has already told w (under l.mu); take the result.
	err := <-w.ch
	waiters.Put(w)
	return err
}

// Shutdown closes the link gracefully: new Sends fail with ErrLinkClosed,
// everything already queued is written, then the socket is closed. It
// returns nil once all queued frames were written and the socket is
// closed, or the link's error if it ended otherwise first. If ctx ends
// first the link is closed at once, dropping what is still queued, and
// Shutdown returns an error wrapping ctx.Err().
//
// Shutdown does not wait for the handler to return (it may be called from
// the handler); wait on Done for that.
func (l *Link) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	if l.sendErr == nil {
		l.sendErr = ErrLinkClosed
		l.draining = true
		if l.spaceCh != nil {
			close(l.spaceCh)
			l.spaceCh = nil
		}
		l.failCreditLocked(l.sendErr)
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	select {
	case <-l.connClosed:
	case <-ctx.Done():
		l.abort(ErrLinkClosed)
		return fmt.Errorf("herd: link shutdown: %w", ctx.Err())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.flushed {
		return nil
	}
	return l.cause
}

// Close closes the link at once: it is Abort(ErrLinkClosed). It does not
// wait for the goroutines (it may be called from the handler); wait on Done
// for that. Close always returns nil.
func (l *Link) Close() error {
	l.abort(ErrLinkClosed)
	return nil
}

// Abort closes the link at once with cause (ErrLinkClosed if nil), unless it
// has already ended. Queued frames not yet written are dropped, senders
// waiting on descriptor frames get an error wrapping ErrLinkClosed and
// cause, received descriptors not yet handed to the handler are closed, and
// Err reports cause. Abort does not wait for the goroutines; wait on Done.
func (l *Link) Abort(cause error) {
	if cause == nil {
		cause = ErrLinkClosed
	}
	l.abort(cause)
}

// Done returns a channel closed once the link has ended, both of its
// goroutines have returned (so the handler is not running and will not be
// called again) and its socket is closed.
func (l *Link) Done() <-chan struct{} { return l.done }

// Err reports why the link ended, or nil while it is open: ErrLinkClosed
// after Close, Abort(nil) or Shutdown; the error given to Abort;
// ErrPeerClosed (matching io.EOF and ErrLinkClosed) when the peer closed its
// end; an error wrapping wire.ErrFrameTooLarge or a *wire.ProtocolError for
// bad input; an error wrapping the handler's error; else the failed system
// call's error.
func (l *Link) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cause
}

// Stats returns the link's counters.
func (l *Link) Stats() Stats {
	return Stats{
		FramesSent:     l.framesSent.Load(),
		FramesReceived: l.framesReceived.Load(),
		BytesSent:      l.bytesSent.Load(),
		BytesReceived:  l.bytesReceived.Load(),
		Writes:         l.writes.Load(),
		Reads:          l.reads.Load(),
	}
}

// abort ends the link with cause unless it has already ended: it refuses
// further sends, drops the queue, fails waiting senders and closes the
// socket, which wakes both goroutines.
func (l *Link) abort(cause error) {
	l.mu.Lock()
	if l.cause != nil {
		l.mu.Unlock()
		return
	}
	l.cause = cause
	if errors.Is(cause, ErrLinkClosed) {
		l.sendErr = cause
	} else {
		l.sendErr = fmt.Errorf("%w: %w", ErrLinkClosed, cause)
	}
	failFDFrames(l.pendingFDs, l.sendErr)
	failFDFrames(l.inflight, l.sendErr)
	l.failCreditLocked(l.sendErr)
	clear(l.pendingFDs)
	l.pending, l.pendingFDs, l.pendingFrames = l.pending[:0], l.pendingFDs[:0], 0
	if l.spaceCh != nil {
		close(l.spaceCh)
		l.spaceCh = nil
	}
	l.mu.Unlock()

	l.aborted.Store(true)
	close(l.quit)
	// Close waits until no read or write callback is using the descriptor,
	// so once it returns the descriptor is closed. It must not be called
	// with l.mu held: the writer's sendmsg callback takes l.mu.
	l.conn.Close()
	close(l.connClosed)
}

// failFDFrames tells the waiting senders of recs that their frames will not
// be sent, and closes descriptors the link owns. Called with l.mu held; the
// writer checks l.cause under l.mu before each sendmsg, so none of these
// descriptors is used afterwards.
func failFDFrames(recs []fdFrame, err error) {
	for i := range recs {
		rec := &recs[i]
		if rec.sent {
			continue
		}
		if rec.w != nil {
			rec.w.ch <- err
			rec.w = nil
		}
		if rec.owned {
			closeFDs(rec.fds)
			rec.fds, rec.owned = nil, false
		}
	}
}

// exit is called by each goroutine as it returns; the last one closes done
// once the socket is closed.
func (l *Link) exit() {
	if l.running.Add(-1) != 0 {
		return
	}
	l.abort(ErrLinkClosed) // no-op: a goroutine only returns after an abort
	<-l.connClosed
	l.stopLinger()
	close(l.done)
}

// maxKnownProc bounds the procedure name the reader remembers as checked
// (Link.rproc): a longer one is checked on every frame.
const maxKnownProc = 256

// decoded notes that the frame in l.env decoded: its procedure passed the
// UTF-8 check, so the next frame to the same procedure (the usual stream)
// need not be checked again (wire.DecodeKnown).
//
// So a frame's env.KnownProcedure (see Handler) says its procedure equals
// that of the last frame with a procedure that the link handed over: a
// procedure too long to remember forgets the one before.
func (l *Link) decoded() {
	switch p := l.env.Procedure; {
	case len(p) == 0, l.env.KnownProcedure:
	case len(p) <= maxKnownProc:
		l.rproc = append(l.rproc[:0], p...)
	default:
		l.rproc = l.rproc[:0]
	}
}

// consume finishes the frame being dispatched: the handler is done with
// env and the files slice, and the reader moves past the frame's bytes.
// It does not zero l.env: the next wire.Decode overwrites every field, and
// its slices alias l.rbuf, which the link keeps anyway (zeroing it here
// as well cost a second clear of the envelope per frame).
func (l *Link) consume() {
	clear(l.files)
	l.files = l.files[:0]
	kept := l.env.Kept // the envelope is overwritten by the next Decode, not here
	l.r += l.rframe
	l.rframe = 0
	if l.small != nil && l.r == l.w {
		// Done with the large frame: back to the read buffer. The large
		// frame's buffer is the handler's if it kept it (Envelope.Kept;
		// it may come back through Recycle), else it serves the next
		// large frame.
		if !kept {
			l.lspare.put(l.rbuf)
		}
		l.rbuf, l.small = l.small, nil
		l.r, l.w = 0, 0
	}
}

// The reader state, Link.rstate: a generation, counted from bit
// rsGenShift, and the reader's phase in the low bits. The generation moves
// on with every Release and every Promote, so that a state names one
// released handler (the inline watchdog of the runtime tells by it whether
// the handler it saw running is still the same, ReleasedHandler), and a
// reader goroutine whose role was given away never finds the state it
// expects again.
const (
	rsReading  = 0 // the reader goroutine owns the reader state
	rsReleased = 1 // its handler called Release: Promote may hand the role over

	rsGenShift = 2
)

// Release is called by the handler, on the reader goroutine, to say that
// it is done with env and the files slice (it has decoded or copied what
// it keeps; the *os.File values stay its own) and is about to do work that
// may take long or block. From then until the handler returns, Promote may
// move the reading to a new goroutine, so that frames keep being read and
// dispatched while this handler runs. A handler that calls Release must not
// touch env or the slice afterwards. Called anywhere else, or twice, it
// does nothing and returns 0; else it returns a token for Reclaim.
func (l *Link) Release() uint64 {
	st := l.rstate.Load()
	if st&3 != rsReading || l.rframe == 0 || l.rtok.Load() != rtBusy {
		// Not on the reader goroutine (a caller that reads cannot hand
		// the reading on), or not in a handler.
		return 0
	}
	l.consume()
	st += 1<<rsGenShift | rsReleased
	l.rstate.Store(st)
	return st
}

// Reclaim is called by a handler that called Release, on the reader
// goroutine, once it is done, with Release's token: it takes the reader
// role back unless Promote gave it to a new goroutine meanwhile, and
// reports whether the calling goroutine is still the reader. The handler
// learns it before it returns, so that what it does next (keeping a claim
// on a mailbox for the next frame, say) is done only by the reader. After
// a true return Promote does nothing until the next Release; after a false
// one the handler must not touch the reader's state again.
func (l *Link) Reclaim(token uint64) bool {
	return token != 0 && l.rstate.CompareAndSwap(token, token&^3|rsReading)
}

// ReleasedHandler reports, from any goroutine, whether a handler that
// called Release runs on the reader goroutine (and has not reclaimed the
// role), with a token that names that handler's run: two calls return the
// same token only if the same run of a handler is still going on. It is
// one atomic load; see PromoteReleased.
func (l *Link) ReleasedHandler() (uint64, bool) {
	st := l.rstate.Load()
	return st, st&3 == rsReleased
}

// PromoteReleased is Promote, but only if the released handler is still
// the run that ReleasedHandler named with token.
func (l *Link) PromoteReleased(token uint64) bool {
	if token&3 != rsReleased {
		return false
	}
	return l.promote(token)
}

// Promote, called from any goroutine, starts a new reader goroutine if the
// current one is inside a handler that called Release, and reports whether
// it did. The old goroutine leaves when its handler returns. The handler's
// frame and every later one are still dispatched in order: the new reader
// starts with the frame after it. From then on the link no longer counts
// the released handler as its own: Done may close while it still runs.
func (l *Link) Promote() bool {
	st := l.rstate.Load()
	if st&3 != rsReleased {
		return false
	}
	return l.promote(st)
}

// promote hands the reader role over from the released state st.
func (l *Link) promote(st uint64) bool {
	next := st&^3 + 1<<rsGenShift | rsReading
	if !l.rstate.CompareAndSwap(st, next) {
		return false
	}
	// The new goroutine takes the old one's place in l.running: Done no
	// longer waits for the released handler.
	go l.readLoop(next, false)
	return true
}
