package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// pendingCall is a request/response call waiting for its reply. They are
// pooled: a round trip allocates no call state.
type pendingCall struct {
	res  proto.Message
	err  error
	done chan struct{} // gets one token when the call is finished

	// wantFiles keeps the descriptors attached to the response in files
	// (otherwise they are closed).
	wantFiles bool
	files     []*os.File

	// lease, when not nil, lets the response borrow the link's buffer
	// (WithBorrowedResponse, borrow.go).
	lease *Lease

	// park is the endpoint's callWaker when this call holds it: finish
	// then also sets fin and wakes it (callwake.go).
	park *callWaker
	fin  atomic.Bool
}

var pendingPool = sync.Pool{New: func() any { return &pendingCall{done: make(chan struct{}, 1)} }}

// finish completes the call with err: it sets fin for a caller holding
// the waker, puts the token in done, and then wakes the waker (which is
// the endpoint's, not the call's: pc itself is not touched after the
// token, when the caller may already have reused it).
func (pc *pendingCall) finish(err error) {
	pc.err = err
	w := pc.park
	if w != nil {
		pc.fin.Store(true)
	}
	pc.done <- struct{}{} // from here on pc is the caller's again
	if w != nil && (w.l == nil || !w.l.CallerReading()) {
		// When a caller reads (callspin.go) it is the waker's holder,
		// pc's caller, and it looks at fin after every frame.
		w.wake()
	}
}

// await waits until the call is finished (true) or ctx ends (false), on
// the endpoint's waker when the call holds it, else on done.
func (pc *pendingCall) await(ctx context.Context) bool {
	if w := pc.park; w != nil {
		return w.await(ctx, pc)
	}
	select {
	case <-pc.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// userCall is a user's call (Worker.Call, Self.Call): through the link's
// and the call's interceptors, with the metadata of ctx and the options.
// Without interceptors it adds nothing to the round trip but a context
// lookup.
func (ep *endpoint) userCall(ctx context.Context, procedure string, req, res proto.Message, opts []CallOption) error {
	cfg := newCallConfig(opts)
	if len(ep.interceptors) == 0 && cfg.interceptorList() == nil {
		md, err := outgoingPairs(ctx, cfg.metadataList())
		if err != nil {
			return err
		}
		return ep.roundTrip(ctx, procedure, req, res, cfg, md)
	}
	spec := Spec{Procedure: procedure, IsClient: true}
	return interceptedCall(ctx, spec, ep.peer, req, res, func(ctx context.Context, req proto.Message) error {
		md, err := outgoingPairs(ctx, cfg.metadataList())
		if err != nil {
			return err
		}
		return ep.roundTrip(ctx, procedure, req, res, cfg, md)
	}, ep.interceptors, cfg.interceptorList())
}

// userSend is a user's fire-and-forget message (Worker.Send, Self.Send),
// as userCall.
func (ep *endpoint) userSend(ctx context.Context, procedure string, req proto.Message, opts []CallOption) error {
	cfg := newCallConfig(opts)
	if len(ep.interceptors) == 0 && cfg.interceptorList() == nil {
		md, err := outgoingPairs(ctx, cfg.metadataList())
		if err != nil {
			return err
		}
		return ep.sendCfg(ctx, procedure, req, cfg, md)
	}
	spec := Spec{Procedure: procedure, IsClient: true, OneWay: true}
	return interceptedCall(ctx, spec, ep.peer, req, nil, func(ctx context.Context, req proto.Message) error {
		md, err := outgoingPairs(ctx, cfg.metadataList())
		if err != nil {
			return err
		}
		return ep.sendCfg(ctx, procedure, req, cfg, md)
	}, ep.interceptors, cfg.interceptorList())
}

// roundTrip sends a request with metadata md (key, value pairs) and the
// files of cfg (nil: none), and waits for its response; the files attached
// to the response go to cfg's WithResponseFiles. A cfg of controlConn flags
// the frame system.
func (ep *endpoint) roundTrip(ctx context.Context, procedure string, req, res proto.Message, cfg *callConfig, md []string) error {
	select {
	case <-ep.closed:
		return NewError(CodeUnavailable, ep.linkErr())
	default:
	}
	if err := ctx.Err(); err != nil {
		return NewError(CodeOf(err), err)
	}
	fds, release, err := callFiles(cfg)
	if err != nil {
		return err
	}
	defer release()

	pc := pendingPool.Get().(*pendingCall)
	pc.res = res
	dst := cfg.responseFileList()
	pc.wantFiles = dst != nil
	pc.lease = cfg.leaseRef()
	id := ep.nextID.Add(1)
	var h wire.Header // field by field: see sendCfg
	h.Procedure, h.CallID, h.Metadata, h.Flags = procedure, id, md, cfg.flags()
	if d, ok := ctx.Deadline(); ok {
		h.DeadlineUnixNano = d.UnixNano()
	}
	ep.pendMu.Lock()
	ep.pending[id] = pc
	pc.park = ep.acquireWakerLocked()
	ep.pendMu.Unlock()

	if pc.lease != nil {
		err = ep.sendWaitingSplit(ctx, &h, req, fds) // borrow.go
	} else {
		err = ep.sendWaiting(ctx, &h, req, fds)
	}
	if err != nil {
		if ep.forget(id) {
			pendingPool.Put(pc.reset())
		} else {
			<-pc.done // the link ended and failed the call concurrently
			pendingPool.Put(pc.reset())
		}
		return sendError(err)
	}
	ep.link.Promote() // a handler on the reader waiting for the peer (inline.go)
	if !pc.await(ctx) {
		if ep.forget(id) {
			pendingPool.Put(pc.reset())
			// Tell the callee, so that its context ends too, unless the
			// deadline that passed travelled with the call: the callee's
			// context then ends by itself, with deadline_exceeded (a
			// cancel frame racing its timer would make that canceled).
			if h.DeadlineUnixNano == 0 || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				ch := wire.Header{ReplyTo: id, Flags: wire.FlagCancel}
				_ = ep.link.Send(context.Background(), &ch, nil, nil)
			}
			return NewError(CodeOf(ctx.Err()), ctx.Err())
		}
		// The reply won the race; it is being (or was) delivered.
		<-pc.done
	}
	err, files := pc.err, pc.files
	pendingPool.Put(pc.reset())
	if dst != nil {
		*dst = files
	}
	return err
}

// sendWaiting sends a frame whose sender is about to wait for the peer (a
// request, or a reply): without descriptors the link writes it on this
// goroutine when it is idle, saving the hand-off to its writer.
func (ep *endpoint) sendWaiting(ctx context.Context, h *wire.Header, msg proto.Message, fds []int) error {
	if len(fds) == 0 {
		return ep.link.SendDirect(ctx, h, msg)
	}
	return ep.link.Send(ctx, h, msg, fds)
}

// forget removes a pending call; false when the reply already claimed it.
func (ep *endpoint) forget(id uint64) bool {
	ep.pendMu.Lock()
	_, ok := ep.pending[id]
	delete(ep.pending, id)
	ep.pendMu.Unlock()
	return ok
}

func (pc *pendingCall) reset() *pendingCall {
	pc.res, pc.err, pc.files, pc.wantFiles, pc.lease = nil, nil, nil, false, nil
	if pc.park != nil {
		pc.park.release()
		pc.park = nil
	}
	pc.fin.Store(false)
	return pc
}

// sendCfg sends a fire-and-forget message with metadata md and the files of
// cfg (nil: none).
func (ep *endpoint) sendCfg(ctx context.Context, procedure string, req proto.Message, cfg *callConfig, md []string) error {
	select {
	case <-ep.closed:
		return NewError(CodeUnavailable, ep.linkErr())
	default:
	}
	if cfg != nil && len(cfg.files) > 0 {
		return ep.sendFiles(ctx, procedure, req, cfg, md)
	}
	// Field by field: a composite literal is built in a temporary and
	// copied, which costs more than the rest of this function.
	var h wire.Header
	h.Procedure, h.Metadata, h.Flags = procedure, md, cfg.flags()
	if err := ep.link.Send(ctx, &h, req, nil); err != nil {
		return sendError(err)
	}
	return nil
}

// sendFiles is sendCfg for a message with files attached.
func (ep *endpoint) sendFiles(ctx context.Context, procedure string, req proto.Message, cfg *callConfig, md []string) error {
	fds, release, err := callFiles(cfg)
	if err != nil {
		return err
	}
	defer release()
	h := wire.Header{Procedure: procedure, Metadata: md, Flags: cfg.flags()}
	if err := ep.link.Send(ctx, &h, req, fds); err != nil {
		return sendError(err)
	}
	return nil
}

// sendError gives a link error its code.
func sendError(err error) error {
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge):
		return NewError(CodeResourceExhausted, err)
	case errors.Is(err, wire.ErrInvalidUTF8):
		return NewError(CodeInvalidArgument, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return NewError(CodeOf(err), err)
	default:
		return NewError(CodeUnavailable, err)
	}
}

func noRelease() {}

// newCallConfig applies opts; nil when there are none.
func newCallConfig(opts []CallOption) *callConfig {
	if len(opts) == 0 {
		return nil
	}
	cfg := new(callConfig)
	for _, o := range opts {
		o.applyToCall(cfg)
	}
	return cfg
}

// callFiles collects the descriptors attached with WithFiles. The files are
// kept alive until release, after the link has written them.
func callFiles(cfg *callConfig) (fds []int, release func(), err error) {
	if cfg == nil || len(cfg.files) == 0 {
		return nil, noRelease, nil
	}
	// The closure captures dups, not the named result: a closure over a
	// result would move it to the heap on every call, files or not.
	var dups []int
	closeAll := func() {
		for _, fd := range dups {
			closeFD(fd)
		}
	}
	for _, c := range cfg.files {
		fd, err := dupConn(c)
		if err != nil {
			closeAll()
			return nil, nil, NewError(CodeInvalidArgument, fmt.Errorf("attach file: %w", err))
		}
		dups = append(dups, fd)
	}
	return dups, closeAll, nil
}

// dupConn duplicates the descriptor behind c (close-on-exec), so that the
// call does not depend on the caller keeping c open. It goes through
// SyscallConn rather than (*os.File).Fd, which would switch the shared file
// description to blocking mode.
func dupConn(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = dupFD(int(s)) }); err != nil {
		return -1, err
	}
	return fd, derr
}
