package runtime

import (
	"context"
	"errors"
	"fmt"
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
}

var pendingPool = sync.Pool{New: func() any { return &pendingCall{done: make(chan struct{}, 1)} }}

func (pc *pendingCall) finish(err error) {
	pc.err = err
	pc.done <- struct{}{}
}

// call sends a request and waits for its response.
func (ep *endpoint) call(ctx context.Context, procedure string, req, res proto.Message, opts []CallOption, system bool) error {
	select {
	case <-ep.closed:
		return NewError(CodeUnavailable, ep.linkErr())
	default:
	}
	if err := ctx.Err(); err != nil {
		return NewError(CodeOf(err), err)
	}
	fds, release, err := callFiles(opts)
	if err != nil {
		return err
	}
	defer release()

	pc := pendingPool.Get().(*pendingCall)
	pc.res = res
	id := ep.nextID.Add(1)
	h := wire.Header{Procedure: procedure, CallID: id}
	if system {
		h.Flags = wire.FlagSystem
	}
	if d, ok := ctx.Deadline(); ok {
		h.DeadlineUnixNano = d.UnixNano()
	}
	ep.pendMu.Lock()
	ep.pending[id] = pc
	ep.pendMu.Unlock()

	if err := ep.link.Send(ctx, &h, req, fds); err != nil {
		if ep.forget(id) {
			pendingPool.Put(pc.reset())
		} else {
			<-pc.done // the link ended and failed the call concurrently
			pendingPool.Put(pc.reset())
		}
		return sendError(err)
	}
	select {
	case <-pc.done:
		err := pc.err
		pendingPool.Put(pc.reset())
		return err
	case <-ctx.Done():
		if !ep.forget(id) {
			// The reply won the race; it is being (or was) delivered.
			<-pc.done
			err := pc.err
			pendingPool.Put(pc.reset())
			return err
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
		return NewError(CodeOf(ctx.Err()), ctx.Err())
	}
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
	pc.res, pc.err = nil, nil
	return pc
}

// send sends a fire-and-forget message: no call ID, so no reply frame.
func (ep *endpoint) send(ctx context.Context, procedure string, req proto.Message, opts []CallOption, system bool) error {
	select {
	case <-ep.closed:
		return NewError(CodeUnavailable, ep.linkErr())
	default:
	}
	fds, release, err := callFiles(opts)
	if err != nil {
		return err
	}
	defer release()
	h := wire.Header{Procedure: procedure}
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
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return NewError(CodeOf(err), err)
	default:
		return NewError(CodeUnavailable, err)
	}
}

// callFiles collects the descriptors attached with WithFiles. The files are
// kept alive until release, after the link has written them.
func callFiles(opts []CallOption) (fds []int, release func(), err error) {
	if len(opts) == 0 {
		return nil, func() {}, nil
	}
	var cfg callConfig
	for _, o := range opts {
		o.applyToCall(&cfg)
	}
	if len(cfg.files) == 0 {
		return nil, func() {}, nil
	}
	release = func() {
		for _, fd := range fds {
			closeFD(fd)
		}
	}
	for _, c := range cfg.files {
		fd, err := dupConn(c)
		if err != nil {
			release()
			return nil, nil, NewError(CodeInvalidArgument, fmt.Errorf("attach file: %w", err))
		}
		fds = append(fds, fd)
	}
	return fds, release, nil
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
