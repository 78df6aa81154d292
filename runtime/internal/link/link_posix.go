//go:build linux || darwin

package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// New starts a link on f, one end of a connected AF_UNIX SOCK_STREAM socket
// (see Pair), calling h for every frame received.
//
// New takes ownership of f and closes it, also on error: it works on a
// duplicate obtained with net.FileConn, switched to non-blocking mode, so
// that both of the link's goroutines wait on Go's netpoller (through the
// connection's syscall.RawConn) instead of blocking threads in read or
// write.
func New(f *os.File, h Handler, opts ...Option) (*Link, error) {
	defer f.Close()
	if h == nil {
		return nil, errors.New("herd: link: nil handler")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("herd: link: %w", err)
	}
	conn, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("herd: link: %s is a %T, not a unix socket", f.Name(), c)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("herd: link: %w", err)
	}
	var typ int
	cerr := rc.Control(func(fd uintptr) {
		typ, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
		// Best effort: the kernel caps it at net.core.wmem_max.
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, socketSendBuffer)
	})
	if err = errors.Join(cerr, err); err == nil && typ != unix.SOCK_STREAM {
		err = fmt.Errorf("socket type %d is not SOCK_STREAM", typ)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("herd: link: %s: %w", f.Name(), err)
	}

	initial := min(cfg.writeLimit, initialWriteBufferSize)
	l := &Link{
		cfg:        cfg,
		conn:       conn,
		rc:         rc,
		handler:    h,
		pending:    make([]byte, 0, initial),
		spare:      make([]byte, 0, initial),
		wake:       make(chan struct{}, 1),
		quit:       make(chan struct{}),
		connClosed: make(chan struct{}),
		done:       make(chan struct{}),
		woob:       make([]byte, unix.CmsgSpace(MaxFDsPerFrame*4)),
		rbuf:       make([]byte, cfg.readBufSize),
		roob:       make([]byte, unix.CmsgSpace(MaxFDsPerFrame*4)),
	}
	// Method values bound once: a closure passed to RawConn.Read/Write on
	// every call would allocate on every call.
	l.writeFn = l.writeCallback
	l.directFn = l.directCallback
	l.writevFn = l.writevCallback
	l.sendmsgFn = l.sendmsgCallback
	l.sendmsgNowFn = l.sendmsgNowCallback
	l.readFn = l.readCallback
	l.tryReadFn = l.tryReadCallback
	l.running.Store(2)
	go l.writeLoop()
	go l.readLoop(0, true)
	return l, nil
}

// socketSendBuffer is the send buffer a link asks for (SO_SNDBUF; Linux
// doubles it, and caps it at net.core.wmem_max). The default (about 208
// KiB on Linux) makes a 1 MiB frame take several wake-ups of the reader;
// a larger one takes it in fewer writes, and lets more small frames queue
// in the kernel during a burst. It limits, it does not allocate: memory is
// used only by bytes the peer has not read yet, and the link's own write
// queue still bounds what a sender can push past a slow reader.
const socketSendBuffer = 1 << 20

// checkFDs rejects descriptors that are negative or not open, so that a bad
// descriptor fails its Send instead of the sendmsg, which would end the
// link.
func checkFDs(fds []int) error {
	for _, fd := range fds {
		if fd < 0 {
			return fmt.Errorf("invalid file descriptor %d", fd)
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return fmt.Errorf("file descriptor %d: %w", fd, err)
		}
	}
	return nil
}

// dupFDs duplicates fds (close-on-exec set).
func dupFDs(fds []int) ([]int, error) {
	dups := make([]int, 0, len(fds))
	for _, fd := range fds {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			closeFDs(dups)
			return nil, os.NewSyscallError("fcntl", err)
		}
		dups = append(dups, d)
	}
	return dups, nil
}

// closeFDs closes every descriptor of fds.
func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// ---- writer ----

// writeLoop is the writer goroutine: it waits for queued frames, takes the
// whole queue at once and writes it.
func (l *Link) writeLoop() {
	defer l.exit()
	for {
		l.mu.Lock()
		// A direct write (SendDirect) under way owns the socket; wait for
		// it, and for something to write.
		for l.writing || len(l.pending) == 0 && l.carry == nil {
			if l.cause != nil {
				l.mu.Unlock()
				return
			}
			if l.draining && !l.writing {
				l.flushed = true
				l.mu.Unlock()
				l.abort(ErrLinkClosed)
				return
			}
			l.mu.Unlock()
			if l.cfg.writerWait != nil {
				l.cfg.writerWait(false)
			}
			select {
			case <-l.wake:
			case <-l.quit:
			}
			if l.cfg.writerWait != nil {
				l.cfg.writerWait(true)
			}
			l.mu.Lock()
		}
		if l.carry != nil {
			// The rest of a direct write goes first.
			batch, buf, frames := l.carry, l.carryBuf, l.carryFrames
			l.carry, l.carryBuf, l.carryFrames = nil, nil, 0
			l.writing = true
			l.mu.Unlock()
			err := l.write(batch)
			if err != nil {
				l.abort(err)
			}
			l.mu.Lock()
			l.writing = false
			if l.spare == nil {
				l.spare = l.recycle(buf)
			}
			l.mu.Unlock()
			if err != nil {
				return
			}
			l.framesSent.Add(uint64(frames))
			continue
		}
		batch, recs, frames := l.pending, l.pendingFDs, l.pendingFrames
		l.pending, l.pendingFDs, l.pendingFrames = l.spare, l.spareFDs, 0
		l.spare, l.spareFDs = nil, nil
		l.inflight = recs
		l.writing = true
		if l.spaceCh != nil {
			close(l.spaceCh)
			l.spaceCh = nil
		}
		l.mu.Unlock()

		if l.cfg.beforeBatch != nil {
			l.cfg.beforeBatch()
		}
		err := l.writeBatch(batch, recs)
		if err != nil {
			// Before recs is cleared: abort fails its waiting senders.
			l.abort(err)
		}

		l.mu.Lock()
		clear(recs)
		l.inflight = nil
		l.writing = false
		l.spare, l.spareFDs = l.recycle(batch), recs[:0]
		l.mu.Unlock()
		if err != nil {
			return
		}
		l.framesSent.Add(uint64(frames))
	}
}

// recycle returns batch emptied for reuse, or a fresh small buffer when the
// buffers grew for a burst that has long passed.
func (l *Link) recycle(batch []byte) []byte {
	initial := min(l.cfg.writeLimit, initialWriteBufferSize)
	if cap(batch) <= initial || len(batch) > cap(batch)/4 {
		l.smallWrite = 0
		return batch[:0]
	}
	if l.smallWrite++; l.smallWrite < shrinkAfter {
		return batch[:0]
	}
	l.smallWrite = 0
	return make([]byte, 0, initial)
}

// writeBatch writes b, attaching each descriptor frame's descriptors to the
// first byte of that frame.
func (l *Link) writeBatch(b []byte, recs []fdFrame) error {
	pos := 0
	for i := range recs {
		rec := &recs[i]
		if rec.mark {
			// A SendSync frame: written once everything up to its end
			// is; then its sender may go on.
			end := rec.off + rec.n
			if err := l.write(b[pos:end]); err != nil {
				return err
			}
			l.mu.Lock()
			rec.sent = true
			if rec.w != nil {
				rec.w.ch <- nil
				rec.w = nil
			}
			l.mu.Unlock()
			pos = end
			continue
		}
		if err := l.write(b[pos:rec.off]); err != nil {
			return err
		}
		// The sendmsg carries everything up to the next descriptor frame;
		// what it leaves unwritten follows with plain writes.
		end := len(b)
		if i+1 < len(recs) {
			end = recs[i+1].off
		}
		n, err := l.sendmsg(b[rec.off:end], rec)
		if err != nil {
			return err
		}
		if err := l.write(b[rec.off+n : end]); err != nil {
			return err
		}
		pos = end
	}
	return l.write(b[pos:])
}

// write writes all of p with write(2), waiting on the netpoller whenever
// the socket is full.
func (l *Link) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	l.wbuf, l.werr = p, nil
	err := l.rc.Write(l.writeFn)
	l.wbuf = nil
	return l.writeError(err, l.werr, "write")
}

// writeDirect writes what the socket takes of p at once, without waiting
// for it to become writable, and returns how much that was.
func (l *Link) writeDirect(p []byte) (int, error) {
	l.wbuf, l.werr = p, nil
	err := l.rc.Write(l.directFn)
	n := len(p) - len(l.wbuf)
	l.wbuf = nil
	return n, l.writeError(err, l.werr, "write")
}

// writevDirect writes what the socket takes at once of the concatenation of
// a, b and c with writev(2), without waiting for it to become writable, and
// returns how much that was.
func (l *Link) writevDirect(a, b, c []byte) (int, error) {
	l.wvecs = [3][]byte{a, b, c}
	l.wvec = l.wvecs[:]
	l.wn, l.werr = 0, nil
	err := l.rc.Write(l.writevFn)
	n := l.wn
	l.wvecs, l.wvec = [3][]byte{}, nil
	return n, l.writeError(err, l.werr, "writev")
}

// writevCallback is the RawConn.Write callback of writevDirect: writev
// until l.wvec is written or the socket is full. It never asks to wait.
func (l *Link) writevCallback(fd uintptr) bool {
	for {
		for len(l.wvec) > 0 && len(l.wvec[0]) == 0 {
			l.wvec = l.wvec[1:]
		}
		if len(l.wvec) == 0 {
			return true
		}
		n, err := unix.Writev(int(fd), l.wvec)
		l.writes.Add(1)
		switch err {
		case nil:
			l.bytesSent.Add(uint64(n))
			l.wn += n
			for n > 0 {
				k := min(n, len(l.wvec[0]))
				l.wvec[0] = l.wvec[0][k:]
				n -= k
				if len(l.wvec[0]) == 0 {
					l.wvec = l.wvec[1:]
				}
			}
		case unix.EINTR:
		case unix.EAGAIN:
			return true
		default:
			l.werr = err
			return true
		}
	}
}

// directCallback is the RawConn.Write callback of writeDirect: it never
// asks to wait.
func (l *Link) directCallback(fd uintptr) bool {
	l.writeCallback(fd)
	return true
}

// writeCallback is the RawConn.Write callback of write. Returning false
// makes RawConn.Write wait until the socket is writable and call it again.
func (l *Link) writeCallback(fd uintptr) bool {
	for len(l.wbuf) > 0 {
		n, err := writeFD(int(fd), l.wbuf)
		l.writes.Add(1)
		switch err {
		case nil:
			l.bytesSent.Add(uint64(n))
			l.wbuf = l.wbuf[n:]
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			l.werr = err
			return true
		}
	}
	return true
}

// sendmsg writes a prefix of p (at least one byte) with sendmsg(2), the
// descriptors of rec attached, and returns how much it wrote.
func (l *Link) sendmsg(p []byte, rec *fdFrame) (int, error) {
	l.wbuf, l.wrec, l.wn, l.werr = p, rec, 0, nil
	err := l.rc.Write(l.sendmsgFn)
	l.wbuf, l.wrec = nil, nil
	return l.wn, l.writeError(err, l.werr, "sendmsg")
}

// errAborted stops the writer when the link was aborted under it.
var errAborted = errors.New("herd: link aborted")

// sendmsgCallback is the RawConn.Write callback of sendmsg. It holds l.mu
// around the (non-blocking) system call so that a sender whose context
// ends can tell whether its descriptors were used, and an abort can tell
// waiting senders their frames failed, without a race with the writer.
func (l *Link) sendmsgCallback(fd uintptr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cause != nil {
		l.werr = errAborted
		return true
	}
	rec := l.wrec
	oob := appendRights(l.woob[:0], rec.fds)
	for {
		n, err := sendmsgFD(int(fd), l.wbuf, oob, sendFlags)
		l.writes.Add(1)
		switch err {
		case nil:
			l.bytesSent.Add(uint64(n))
			l.wn = n
			rec.sent = true
			if rec.w != nil {
				rec.w.ch <- nil
				rec.w = nil
			}
			if rec.owned {
				closeFDs(rec.fds)
			}
			rec.fds, rec.owned = nil, false
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			l.werr = err
			return true
		}
	}
}

// appendRights appends an SCM_RIGHTS control message carrying fds to b, as
// unix.UnixRights does but into a reused buffer.
func appendRights(b []byte, fds []int) []byte {
	datalen := len(fds) * 4
	start := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(datalen))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level = unix.SOL_SOCKET
	h.Type = unix.SCM_RIGHTS
	h.SetLen(unix.CmsgLen(datalen))
	data := b[start+unix.CmsgLen(0):]
	for i, fd := range fds {
		binary.NativeEndian.PutUint32(data[4*i:], uint32(int32(fd)))
	}
	return b
}

// writeError turns the results of a RawConn.Write into the link's error.
func (l *Link) writeError(rawErr, callErr error, call string) error {
	switch {
	case rawErr != nil:
		// The socket was closed under the writer: the link was aborted.
		if l.aborted.Load() {
			return errAborted
		}
		return fmt.Errorf("herd: link %s: %w", call, rawErr)
	case callErr == nil, callErr == errAborted:
		return callErr
	case callErr == unix.EPIPE, callErr == unix.ECONNRESET:
		return fmt.Errorf("%w (%w)", ErrPeerClosed, os.NewSyscallError(call, callErr))
	default:
		return fmt.Errorf("herd: link %w", os.NewSyscallError(call, callErr))
	}
}

// ---- reader ----

// readLoop is the reader goroutine. st is the reader state it starts
// with (see Promote); fill says whether it starts by reading the socket
// (the first reader) or with the bytes already buffered (a promoted one).
func (l *Link) readLoop(st uint64, fill bool) {
	err := l.readFrames(st, fill)
	if err == errPromoted {
		// The new reader goroutine owns the reader state, and took over
		// this one's place in the count of running goroutines.
		return
	}
	// A caller may hold the reader role (ReadUntil): the state below is
	// the role's.
	l.awaitRole()
	if l.cfg.readIdle != nil {
		l.cfg.readIdle()
	}
	defer l.exit()
	l.abort(err)
	// Descriptors received but not claimed by any frame are closed,
	// whatever ended the link.
	closeFDs(l.fdq)
	l.fdq = nil
}

// errPromoted ends a reader goroutine whose role Promote gave to another.
var errPromoted = errors.New("herd: link: reader promoted")

// readFrames reads and dispatches frames until the link ends. st is the
// reader state (Link.rstate) this goroutine owns while reading.
func (l *Link) readFrames(st uint64, fill bool) error {
	for {
		if fill {
			if err := l.fill(); err != nil {
				return err
			}
		}
		fill = true
		var err error
		if st, err = l.dispatchAll(st); err != nil {
			return err
		}
	}
}

// dispatchAll decodes and dispatches every whole frame in the read buffer,
// then tells the handler's side the read is done (WithReadIdle) and checks
// the descriptors left for the partial frame. st is the reader state, as
// for dispatch.
func (l *Link) dispatchAll(st uint64) (uint64, error) {
	for {
		n, err := wire.DecodeKnown(l.rbuf[l.r:l.w], l.cfg.maxFrame, &l.env, l.rproc)
		if err != nil {
			return st, err
		}
		if n == 0 {
			break
		}
		l.decoded()
		// A large frame's own buffer holds this frame only, and the
		// link lets go of it once the frame is consumed.
		if l.small != nil {
			l.env.Owned = l.rbuf
		}
		if st, err = l.dispatch(st, n); err != nil {
			return st, err
		}
		if l.aborted.Load() {
			return st, ErrLinkClosed
		}
	}
	if l.cfg.readIdle != nil {
		l.cfg.readIdle()
	}
	return st, l.checkPartial()
}

// dispatch hands the decoded frame in l.env, n bytes long, and its
// descriptors, to the handler, and consumes it. st is the reader state
// before the frame; dispatch returns it after (a handler that called
// Release moved it on).
func (l *Link) dispatch(st uint64, n int) (uint64, error) {
	var take int
	var lost uint32
	if l.env.FDCount > 0 || len(l.batches) > 0 {
		// Without descriptors queued or claimed there is nothing to
		// match (the usual frame).
		var err error
		take, lost, err = l.claim(l.rpos-uint64(l.w-l.r), uint64(n), l.env.FDCount)
		if err != nil {
			return st, err
		}
	}
	var files []*os.File
	if take > 0 {
		for _, fd := range l.fdq[:take] {
			l.files = append(l.files, os.NewFile(uintptr(fd), "herd-received-fd"))
		}
		l.fdq = l.fdq[:copy(l.fdq, l.fdq[take:])]
		files = l.files
	}
	l.env.FDsLost = lost
	l.framesReceived.Add(1)
	l.rframe = n
	err := l.handler(&l.env, files)
	released := st + 1<<rsGenShift // the state after the handler's Release
	switch now := l.rstate.Load(); {
	case now == st:
		l.consume()
	case now == released:
		// Released (and so consumed) and reclaimed by the handler.
		st = released
	case now == released|rsReleased && l.rstate.CompareAndSwap(now, released):
		// Released by the handler, not promoted.
		st = released
	default:
		// Promoted: the state is the new reader's. A handler error
		// still ends the link.
		if err != nil {
			l.abort(fmt.Errorf("herd: link handler: %w", err))
		}
		return st, errPromoted
	}
	if err != nil {
		return st, fmt.Errorf("herd: link handler: %w", err)
	}
	return st, nil
}

// claim matches the k descriptors claimed by the frame at stream offset f0,
// n bytes long, with those received: they must have arrived with the
// frame's first byte, that is in the batch whose bytes include f0. It
// returns how many of the descriptors at the head of fdq are the frame's,
// and how many of its k the kernel lost (MSG_CTRUNC). Descriptors that no
// later frame can claim, because the next frame starts after the bytes
// they arrived with, are a protocol error (ErrUnclaimedFDs).
func (l *Link) claim(f0, n uint64, k uint32) (take int, lost uint32, err error) {
	if err := l.expire(f0); err != nil {
		return 0, 0, err
	}
	if k > 0 {
		if k > MaxFDsPerFrame {
			return 0, 0, &wire.ProtocolError{Cause: fmt.Errorf("frame claims %d file descriptors, at most %d can be sent", k, MaxFDsPerFrame)}
		}
		var b *fdBatch
		if len(l.batches) > 0 && l.batches[0].start <= f0 {
			b = &l.batches[0]
		}
		switch {
		case b != nil && b.n >= int(k):
			take = int(k)
		case b != nil && b.lost:
			take, lost = b.n, k-uint32(b.n)
		default:
			got := 0
			if b != nil {
				got = b.n
			}
			return 0, 0, &wire.ProtocolError{Cause: fmt.Errorf("frame claims %d file descriptors, %d arrived with it", k, got)}
		}
		if b.n -= take; b.n == 0 {
			l.popBatch()
		}
	}
	return take, lost, l.expire(f0 + n)
}

// expire drops the batches whose bytes all lie before stream offset pos,
// where the next frame starts: no frame left can claim their descriptors,
// so any still queued are a protocol error.
func (l *Link) expire(pos uint64) error {
	for len(l.batches) > 0 && l.batches[0].end <= pos {
		if l.batches[0].n > 0 {
			return l.unclaimed(l.batches[0])
		}
		l.popBatch()
	}
	return nil
}

// checkPartial runs once every whole frame in the buffer has been
// dispatched: what remains is at most the start of one frame, so only the
// batch that arrived with that start may still hold descriptors. The queue
// thus never holds more than one batch (MaxFDsPerFrame descriptors) between
// reads.
func (l *Link) checkPartial() error {
	pos := l.rpos - uint64(l.w-l.r) // where the partial frame starts
	if err := l.expire(pos); err != nil {
		return err
	}
	for i, b := range l.batches {
		if b.start <= pos {
			continue // the partial frame's
		}
		if b.n > 0 {
			return l.unclaimed(b)
		}
		l.batches = slices.Delete(l.batches, i, i+1) // only lost ones: nothing to close
		return l.checkPartial()
	}
	return nil
}

// unclaimed is the error for descriptors of b that no frame claims.
func (l *Link) unclaimed(b fdBatch) error {
	return &wire.ProtocolError{Cause: fmt.Errorf("%w: %d arrived with stream bytes [%d, %d), which no frame claiming them starts in",
		ErrUnclaimedFDs, b.n, b.start, b.end)}
}

func (l *Link) popBatch() {
	l.batches = l.batches[:copy(l.batches, l.batches[1:])]
}

// fill makes room in the read buffer and reads once.
func (l *Link) fill() error {
	l.makeRoom()
	if l.w == len(l.rbuf) {
		return errInternalFull
	}
	l.rerr = nil
	for {
		err := l.rc.Read(l.readFn)
		if err == nil {
			break
		}
		if l.aborted.Load() {
			return ErrLinkClosed
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// A caller that read for its reply woke this goroutine
			// (kickReader): bytes are waiting that no readiness
			// will announce again.
			l.conn.SetReadDeadline(time.Time{})
			continue
		}
		return fmt.Errorf("herd: link read: %w", err)
	}
	return l.received()
}

// received takes in the results of a recvmsg (l.rn, l.roobn, l.rflags,
// l.rerr): queues the descriptors that came with the bytes, and turns a
// failed read or the end of the stream into the link's error.
func (l *Link) received() error {
	lost := l.rflags&unix.MSG_CTRUNC != 0
	if l.roobn > 0 || lost {
		// The descriptors belong to the frame that starts in the bytes of
		// this read. With MSG_CTRUNC the kernel installed only the first
		// ones (it closed the rest: typically this process is at its
		// descriptor limit); the frame then gets those and learns how many
		// were lost (Envelope.FDsLost), and the link goes on.
		if l.cfg.noFDs {
			// Not one is kept, however many frames would claim them.
			n := 0
			forEachRight(l.roob[:l.roobn], func(fd int) { unix.Close(fd); n++ })
			return &wire.ProtocolError{Cause: fmt.Errorf("%w: the peer sent %d", ErrFDsRefused, n)}
		}
		q := len(l.fdq)
		l.fdq = appendReceivedFDs(l.fdq, l.roob[:l.roobn])
		if got := len(l.fdq) - q; got > 0 || lost {
			l.batches = append(l.batches, fdBatch{n: got, start: l.rpos, end: l.rpos + uint64(l.rn), lost: lost})
		}
	}
	switch {
	case l.rerr == unix.ECONNRESET:
		return fmt.Errorf("%w (%w)", ErrPeerClosed, os.NewSyscallError("recvmsg", l.rerr))
	case l.rerr != nil:
		return fmt.Errorf("herd: link %w", os.NewSyscallError("recvmsg", l.rerr))
	case l.rn == 0:
		if l.w > l.r {
			return &wire.ProtocolError{Cause: fmt.Errorf("stream ended inside a frame (%d bytes buffered): %w", l.w-l.r, io.ErrUnexpectedEOF)}
		}
		return ErrPeerClosed
	}
	l.w += l.rn
	l.rpos += uint64(l.rn)
	l.bytesReceived.Add(uint64(l.rn))
	return nil
}

// makeRoom ensures the read buffer has room for the frame being read. A
// frame larger than the read buffer is read into a buffer of its own, as
// long as the frame, so that a large payload is copied once, by the kernel,
// and a handler may keep it (Envelope.Owned, Envelope.Kept) instead of
// copying it out of a shared buffer. The buffer of a large frame its
// handler did not keep, or gave back (Recycle), serves the next one, until
// shrinkAfter reads go by without a large frame. The read buffer itself
// never grows.
func (l *Link) makeRoom() {
	if l.r == l.w {
		l.r, l.w = 0, 0
	}
	if l.small != nil {
		// rbuf is the large frame's own buffer, as long as the frame.
		return
	}
	need := 0 // size of the partial frame at l.r, if known
	if l.w-l.r >= wire.PrefixSize {
		// Decode has checked the length against the maximum already, so
		// this allocation is bounded by WithMaxFrameSize.
		need = wire.PrefixSize + int(binary.BigEndian.Uint32(l.rbuf[l.r:]))
	}
	switch {
	case need > len(l.rbuf):
		b := l.lspare.take(need)
		if b == nil {
			b = make([]byte, need)
		}
		l.largeIdle = 0
		l.w = copy(b, l.rbuf[l.r:l.w])
		l.r, l.small, l.rbuf = 0, l.rbuf, b
		return
	case need > len(l.rbuf)-l.r, len(l.rbuf)-l.w < minReadBufferSize && l.r > 0:
		l.w = copy(l.rbuf, l.rbuf[l.r:l.w])
		l.r = 0
	}
	if l.largeIdle < shrinkAfter {
		if l.largeIdle++; l.largeIdle == shrinkAfter {
			l.lspare.drop()
		}
	}
}

// readCallback is the RawConn.Read callback: one recvmsg into the free part
// of the read buffer. Returning false makes RawConn.Read wait until the
// socket is readable and call it again.
//
// It first makes sure the reader goroutine holds the reader role (see
// caller_read.go): a caller reading for its reply (ReadUntil) may hold it
// while this goroutine waits for the socket, and then this goroutine only
// notes that the socket became readable, and waits again.
func (l *Link) readCallback(fd uintptr) bool {
	if !l.takeRole() {
		return false
	}
	if !l.recvOnce(fd) {
		// Nothing to read, and every whole frame dispatched: while this
		// goroutine waits, a caller may read instead.
		l.rtok.Store(rtIdle)
		return false
	}
	return true
}

// recvOnce makes one recvmsg into the free part of the read buffer (again
// on EINTR) and keeps its results for received; false when the socket
// had nothing (EAGAIN: it is non-blocking).
func (l *Link) recvOnce(fd uintptr) bool {
	for {
		n, oobn, flags, err := l.recv.recvmsg(int(fd), l.rbuf[l.w:], l.roob)
		l.reads.Add(1)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		l.rn, l.roobn, l.rflags, l.rerr = max(n, 0), oobn, flags, err
		return true
	}
}

// appendReceivedFDs appends the descriptors of every SCM_RIGHTS message in
// oob to q. It parses the control messages in place, where
// unix.ParseSocketControlMessage and unix.ParseUnixRights would allocate.
func appendReceivedFDs(q []int, oob []byte) []int {
	forEachRight(oob, func(fd int) { q = append(q, fd) })
	return q
}

// forEachRight calls f for each descriptor in the SCM_RIGHTS messages of
// oob, a control buffer filled by recvmsg.
func forEachRight(oob []byte, f func(fd int)) {
	hdrLen := unix.CmsgLen(0)
	for len(oob) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(oob) {
			return
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_RIGHTS {
			for data := oob[hdrLen:l]; len(data) >= 4; data = data[4:] {
				f(int(int32(binary.NativeEndian.Uint32(data))))
			}
		}
		next := unix.CmsgSpace(l - hdrLen)
		if next > len(oob) {
			return
		}
		oob = oob[next:]
	}
}
