package runtime

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime/internal/link"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// Borrowed buffers: large messages without a fresh allocation each.
//
// A frame larger than the link's read buffer (64 KiB) is read into a
// buffer of its own. By default a decoded message owns its bytes: its
// bytes fields are copied out of that buffer, which then serves the next
// large frame. For a stream of 1 MiB messages that is a fresh megabyte per
// message on each side, and the zeroing, page faults and garbage collection
// cycles it causes cost more than the copies themselves.
//
// Two opt-ins let a message's large bytes fields share the link's buffer
// instead, for a lifetime the runtime knows:
//
//   - WithBorrowedRequests (a handler option): a request's fields are valid
//     until the handler has returned. The endpoint writes the reply (which
//     may share the buffer too: an echo sends the caller's bytes back
//     straight from it) and then gives the buffer back to the link.
//   - WithBorrowedResponse (a call option): a response's fields are valid
//     until the caller releases its Lease.
//
// Only singular bytes fields of the message itself (not of nested messages,
// not repeated) of 16 KiB or more are shared (wire.Unmarshal); everything
// else is decoded as usual. A buffer is given back to its link at most once;
// the link keeps at most one spare (link.Link.Recycle). A buffer never given
// back (a Lease never released, a handler's request kept) is not a leak:
// the garbage collector takes it once nothing refers to it, and the next
// large frame gets a fresh buffer. What the contract forbids, like
// sync.Pool's, is use after release: the bytes are then overwritten by a
// later message.

// WithBorrowedRequests makes the handler's requests borrow the link's
// buffer: a large bytes field (a singular bytes field of the request
// message itself, of 16 KiB or more) is a slice of the buffer the request
// was read into, not a copy. The slice is valid until the handler returns;
// the response may share it (an echo returns the request's bytes as they
// are), since the runtime writes the reply before it gives the buffer back
// to the link, which reads a later large message into it.
//
// A handler, or one of its interceptors, that keeps such a field, or the
// request itself, beyond its return must copy the field (bytes.Clone):
// otherwise a later message overwrites it. Small requests, and requests
// over an in-process Mux, are decoded as usual. Use it on handlers of large
// messages that decode, use and drop their bytes within the call.
func WithBorrowedRequests() HandlerOption {
	return handlerOptionFunc(func(h *Handler) { h.borrow = true })
}

// A Lease holds the link buffer a response borrowed (WithBorrowedResponse)
// until Release. The zero value is ready to use and holds nothing. A Lease
// is not safe for concurrent use.
type Lease struct {
	link *link.Link
	buf  []byte
}

// Release gives the borrowed buffer back to its link: from then on the
// response's large bytes fields may be overwritten by a later message.
// Release of a Lease that holds nothing (the response was small, or
// released already) does nothing.
func (l *Lease) Release() {
	if l.buf == nil {
		return
	}
	l.link.Recycle(l.buf)
	l.link, l.buf = nil, nil
}

// Held reports whether the Lease holds a buffer: whether the last response
// decoded with it shares memory with the link.
func (l *Lease) Held() bool { return l.buf != nil }

// hold makes l hold buf of lk. A buffer l already held goes to the garbage
// collector, not back to its link: its response stays valid.
func (l *Lease) hold(lk *link.Link, buf []byte) {
	l.link, l.buf = lk, buf
}

// WithBorrowedResponse makes the call's response borrow the link's buffer:
// a large bytes field (a singular bytes field of the response message
// itself, of 16 KiB or more) is a slice of the buffer the response was read
// into, not a copy, and l holds that buffer. The field is valid until
// l.Release, which lets the link read a later large message into the
// buffer; copy what must outlive it.
//
// A Lease never released only costs the reuse: the buffer is garbage once
// the response is, and the link allocates another. Give each call in flight
// its own Lease; a Lease that already holds a buffer when its call
// completes lets that buffer go (the earlier response stays valid, and is
// simply not reused). Responses that are small, or an error, or that come
// over an in-process Mux, borrow nothing and leave l empty.
func WithBorrowedResponse(l *Lease) CallOption {
	return leaseOption{l}
}

// leaseOption is WithBorrowedResponse's option: one pointer, so that
// making it a CallOption does not allocate.
type leaseOption struct{ l *Lease }

func (o leaseOption) applyToCall(c *callConfig) { c.lease = o.l }

// leaseRef reads a config that may be nil.
func (c *callConfig) leaseRef() *Lease {
	if c == nil {
		return nil
	}
	return c.lease
}

// decodeBorrowed decodes the request of a WithBorrowedRequests handler
// from a large frame's own buffer, letting its large bytes fields share
// it. A request that does share it keeps the buffer from the link
// (Envelope.Kept) until giveBack.
func (ep *endpoint) decodeBorrowed(in *inbound, h *Handler, env *wire.Envelope) {
	aliased, err := wire.Unmarshal(env.Payload, in.req, true)
	if aliased {
		// Even when the decode failed: the refused request may share the
		// buffer, so it is never given back, only dropped.
		env.Kept = true
	}
	if err != nil {
		in.refuse(h.procedure, NewError(CodeInvalidArgument, fmt.Errorf("decode %s request: %w", h.procedure, err)))
		return
	}
	if aliased {
		in.extra().borrowed = env.Owned
	}
}

// giveBack gives a borrowed request's buffer back to the link, once its
// handler has returned and its reply is written (or the request was
// dropped).
func (ep *endpoint) giveBack(in *inbound) {
	if x := in.x; x != nil && x.borrowed != nil {
		if testHookGaveBack != nil {
			testHookGaveBack(x.borrowed)
		}
		ep.link.Recycle(x.borrowed)
		x.borrowed = nil
	}
}

// testHookGaveBack, when set by a test before the endpoint starts, is
// called with each borrowed request's buffer as it is given back.
var testHookGaveBack func(buf []byte)

// completeBorrowed completes a call made WithBorrowedResponse whose
// response came in a large frame's own buffer: its large bytes fields
// share the buffer, which the caller's Lease holds.
func (ep *endpoint) completeBorrowed(pc *pendingCall, env *wire.Envelope) {
	aliased, err := wire.Unmarshal(env.Payload, pc.res, true)
	if aliased {
		env.Kept = true // the response shares it, decoded or not
	}
	if err != nil {
		closeFiles(pc.files)
		pc.files = nil
		pc.finish(NewError(CodeInternal, fmt.Errorf("decode response: %w", err)))
		return
	}
	if aliased {
		pc.lease.hold(ep.link, env.Owned)
	}
	pc.finish(nil)
}

// sendWaitingSplit is sendWaiting for a process that borrows: a large
// bytes field goes from msg to the socket (link.SendDirectSplit). The
// request of a call made WithBorrowedResponse, and the reply of a
// WithBorrowedRequests handler, are sent so; the defaults copy into the
// link's write buffer, which measured faster for a process that allocates
// per large message anyway (see SendDirectSplit).
func (ep *endpoint) sendWaitingSplit(ctx context.Context, h *wire.Header, msg proto.Message, fds []int) error {
	if len(fds) == 0 {
		return ep.link.SendDirectSplit(ctx, h, msg)
	}
	return ep.link.Send(ctx, h, msg, fds)
}
