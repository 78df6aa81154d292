package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// pendingCall is a request/response call waiting for its reply. They are
// pooled: a round trip allocates no call state.
type pendingCall struct {
	res  proto.Message
	err  error
	done chan struct{}

	// wantFiles keeps the descriptors attached to the response in files
	// (otherwise they are closed).
	wantFiles bool
	files     []*os.File

	// async, when set, is called instead of signalling done: on the link's
	// reader goroutine with the reply, or on its watcher when the link
	// ends. Such calls are not pooled.
	async func(err error)
}

var pendingPool = sync.Pool{New: func() any { return &pendingCall{done: make(chan struct{}, 1)} }}

func (pc *pendingCall) finish(err error) {
	if pc.async != nil {
		pc.async(err)
		return
	}
	pc.err = err
	pc.done <- struct{}{}
}

// call sends a request of the runtime's own and waits for its response.
func (ep *endpoint) call(ctx context.Context, procedure string, req, res proto.Message, opts []CallOption, system bool) error {
	_, err := ep.callFiles(ctx, procedure, req, res, opts, system, false)
	return err
}

// callFiles is call that, with wantFiles, also returns the descriptors
// attached to the response (the caller owns them).
func (ep *endpoint) callFiles(ctx context.Context, procedure string, req, res proto.Message, opts []CallOption, system, wantFiles bool) ([]*os.File, error) {
	return ep.roundTrip(ctx, procedure, req, res, newCallConfig(opts), nil, system, wantFiles)
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
		_, err = ep.roundTrip(ctx, procedure, req, res, cfg, md, false, false)
		return err
	}
	spec := Spec{Procedure: procedure, IsClient: true}
	return interceptedCall(ctx, spec, ep.peer, req, res, func(ctx context.Context, req proto.Message) error {
		md, err := outgoingPairs(ctx, cfg.metadataList())
		if err != nil {
			return err
		}
		_, err = ep.roundTrip(ctx, procedure, req, res, cfg, md, false, false)
		return err
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
		return ep.sendCfg(ctx, procedure, req, cfg, md, false)
	}
	spec := Spec{Procedure: procedure, IsClient: true, OneWay: true}
	return interceptedCall(ctx, spec, ep.peer, req, nil, func(ctx context.Context, req proto.Message) error {
		md, err := outgoingPairs(ctx, cfg.metadataList())
		if err != nil {
			return err
		}
		return ep.sendCfg(ctx, procedure, req, cfg, md, false)
	}, ep.interceptors, cfg.interceptorList())
}

// roundTrip sends a request with metadata md (key, value pairs) and the
// files of cfg (nil: none), and waits for its response.
func (ep *endpoint) roundTrip(ctx context.Context, procedure string, req, res proto.Message, cfg *callConfig, md []string, system, wantFiles bool) ([]*os.File, error) {
	select {
	case <-ep.closed:
		return nil, NewError(CodeUnavailable, ep.linkErr())
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, NewError(CodeOf(err), err)
	}
	fds, release, err := callFiles(cfg)
	if err != nil {
		return nil, err
	}
	defer release()

	pc := pendingPool.Get().(*pendingCall)
	pc.res = res
	pc.wantFiles = wantFiles
	id := ep.nextID.Add(1)
	h := wire.Header{Procedure: procedure, CallID: id, Metadata: md}
	if system {
		h.Flags = wire.FlagSystem
	}
	if d, ok := ctx.Deadline(); ok {
		h.DeadlineUnixNano = d.UnixNano()
	}
	ep.pendMu.Lock()
	ep.pending[id] = pc
	ep.pendMu.Unlock()

	if err := ep.sendWaiting(ctx, &h, req, fds); err != nil {
		if ep.forget(id) {
			pendingPool.Put(pc.reset())
		} else {
			<-pc.done // the link ended and failed the call concurrently
			pendingPool.Put(pc.reset())
		}
		return nil, sendError(err)
	}
	ep.link.Promote() // a handler on the reader waiting for the peer (inline.go)
	select {
	case <-pc.done:
		err, files := pc.err, pc.files
		pendingPool.Put(pc.reset())
		return files, err
	case <-ctx.Done():
		if !ep.forget(id) {
			// The reply won the race; it is being (or was) delivered.
			<-pc.done
			err, files := pc.err, pc.files
			pendingPool.Put(pc.reset())
			return files, err
		}
		pendingPool.Put(pc.reset())
		// Tell the callee, so that its context ends too, unless the
		// deadline that passed travelled with the call: the callee's
		// context then ends by itself, with deadline_exceeded (a cancel
		// frame racing its timer would make that canceled).
		if h.DeadlineUnixNano == 0 || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			ch := wire.Header{ReplyTo: id, Flags: wire.FlagCancel}
			_ = ep.link.Send(context.Background(), &ch, nil, nil)
		}
		return nil, NewError(CodeOf(ctx.Err()), ctx.Err())
	}
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
	pc.res, pc.err, pc.files, pc.wantFiles = nil, nil, nil, false
	return pc
}

// callAsync sends a request whose reply goes to pc.async (set by the
// caller, with pc.res) instead of a waiting goroutine. The send never
// blocks, and fds are borrowed (see link.SendBorrowed): the caller keeps
// them open until pc.async has been called, which happens only after the
// reply came (so they were sent) or the link ended. It reports whether
// pc.async will be called: false when the request could not be sent (err
// says why), true when it was sent, or when the link ended under it and
// its watcher fails the call (err is then not nil).
func (ep *endpoint) callAsync(procedure string, req proto.Message, pc *pendingCall, fds []int, system bool) (bool, error) {
	id := ep.nextID.Add(1)
	h := wire.Header{Procedure: procedure, CallID: id}
	if system {
		h.Flags = wire.FlagSystem
	}
	ep.pendMu.Lock()
	ep.pending[id] = pc
	ep.pendMu.Unlock()
	if err := ep.link.SendBorrowed(&h, req, fds); err != nil {
		return !ep.forget(id), sendError(err)
	}
	return true, nil
}

// send sends a fire-and-forget message of the runtime's own: no call ID,
// so no reply frame.
func (ep *endpoint) send(ctx context.Context, procedure string, req proto.Message, opts []CallOption, system bool) error {
	return ep.sendCfg(ctx, procedure, req, newCallConfig(opts), nil, system)
}

// sendCfg sends a fire-and-forget message with metadata md and the files of
// cfg (nil: none).
func (ep *endpoint) sendCfg(ctx context.Context, procedure string, req proto.Message, cfg *callConfig, md []string, system bool) error {
	select {
	case <-ep.closed:
		return NewError(CodeUnavailable, ep.linkErr())
	default:
	}
	fds, release, err := callFiles(cfg)
	if err != nil {
		return err
	}
	defer release()
	h := wire.Header{Procedure: procedure, Metadata: md}
	if system {
		h.Flags = wire.FlagSystem
	}
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
