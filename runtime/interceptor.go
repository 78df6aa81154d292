package runtime

import (
	"context"
	"slices"

	"google.golang.org/protobuf/proto"
)

// Spec describes a call, for interceptors.
type Spec struct {
	// Procedure is the method called, "/package.Service/Method".
	Procedure string
	// IsClient reports that the interceptor runs on the calling side
	// (false: on the side that handles the call).
	IsClient bool
	// OneWay reports a fire-and-forget message (Send): there is no
	// response, and an error returned on the handling side is reported as
	// an error event rather than to the caller.
	OneWay bool
}

// Peer is the other end of a call's link.
type Peer struct {
	// WorkerID is the worker at the other end, on the primary's side. It
	// is 0 on a worker's side, where the peer is the primary, and for a
	// Mux.
	WorkerID uint64
	// Primary reports that the peer is the primary: the call is made or
	// handled on a worker.
	Primary bool
}

// Request is one call as interceptors see it.
type Request struct {
	// Spec says what is called, and from which side.
	Spec Spec
	// Peer is the other end of the link.
	Peer Peer
	// Msg is the request message (a generated message of the procedure's
	// request type). An interceptor may replace it with another message
	// of the same type.
	Msg proto.Message
}

// UnaryFunc is one step of a call: on the client side it sends the request
// and returns the response; on the handler side it runs the handler. The
// response is nil for a fire-and-forget message, and for an error.
//
// Metadata travels in ctx: a client interceptor adds outgoing metadata with
// AppendToOutgoingContext before calling next; a handler interceptor reads
// the caller's with MetadataFromContext.
type UnaryFunc func(ctx context.Context, req *Request) (proto.Message, error)

// Interceptor wraps calls, on the calling side, the handling side or both
// (Request.Spec.IsClient tells them apart), as connect-go's Interceptor
// does for unary calls. It may inspect and replace the request, the
// response and the error, or short-circuit the call by returning without
// calling next (return an *Error so that the caller sees its code).
//
// Interceptors see the calls of user procedures made through a ClientConn
// (Worker, Self, Mux, Broadcast) and the requests handled by registered
// handlers. They do not see the runtime's own control traffic, nor events
// (Fork, Online, Exit...), which are not calls.
type Interceptor interface {
	// WrapUnary returns a UnaryFunc that runs around next.
	WrapUnary(next UnaryFunc) UnaryFunc
}

// UnaryInterceptorFunc is an Interceptor as a function.
type UnaryInterceptorFunc func(next UnaryFunc) UnaryFunc

// WrapUnary implements Interceptor.
func (f UnaryInterceptorFunc) WrapUnary(next UnaryFunc) UnaryFunc { return f(next) }

// InterceptorOption is the option WithInterceptors returns: it configures a
// client, a call, a handler, a Primary or a Self.
type InterceptorOption interface {
	ClientOption
	CallOption
	HandlerOption
	PrimaryOption
	SelfOption
}

// WithInterceptors adds interceptors. The first is the outermost: it runs
// first on the way in and last on the way out. Where it is given decides
// what it wraps:
//
//   - NewClient, NewSendClient (as a ClientOption) or one call (as a
//     CallOption): that client's or that call's calls;
//   - NewUnaryHandler (as a HandlerOption): that handler;
//   - NewPrimary or Primary.Setup: every call made through a Worker handle
//     of later forks, and every request they send to handlers registered
//     on the Primary or on their Worker handle;
//   - NewSelf: every call the worker makes to the primary, and every
//     request the primary sends to handlers registered on Self.
//
// Link-wide interceptors (Primary, Self) run outside those of a client, a
// call or a handler.
func WithInterceptors(interceptors ...Interceptor) InterceptorOption {
	return interceptorsOption(slices.Clone(interceptors))
}

type interceptorsOption []Interceptor

func (o interceptorsOption) applyToClient(c *clientConfig) {
	c.callOptions = append(c.callOptions, o)
}
func (o interceptorsOption) applyToCall(c *callConfig) {
	c.interceptors = append(c.interceptors, o...)
}
func (o interceptorsOption) applyToHandler(h *Handler) {
	h.interceptors = append(h.interceptors, o...)
}
func (o interceptorsOption) applyToPrimary(s *settings) {
	s.endpoint.interceptors = slices.Concat(s.endpoint.interceptors, o)
}
func (o interceptorsOption) applyToSelf(c *selfConfig) {
	c.endpoint.interceptors = slices.Concat(c.endpoint.interceptors, o)
}

// chainUnary wraps next in interceptors, the first outermost.
func chainUnary(next UnaryFunc, interceptors ...[]Interceptor) UnaryFunc {
	for i := len(interceptors) - 1; i >= 0; i-- {
		ics := interceptors[i]
		for j := len(ics) - 1; j >= 0; j-- {
			if ics[j] != nil {
				next = ics[j].WrapUnary(next)
			}
		}
	}
	return next
}

// adoptResponse makes res, the message the caller gave to be filled, hold
// out, the response that came back through the client interceptors: they
// may have replaced it (a cached answer, say).
func adoptResponse(res, out proto.Message) error {
	if out == nil || out == res {
		return nil
	}
	if res == nil {
		return nil
	}
	if out.ProtoReflect().Descriptor() != res.ProtoReflect().Descriptor() {
		return Errorf(CodeInternal, "interceptor returned a %s response, want %s",
			out.ProtoReflect().Descriptor().FullName(), res.ProtoReflect().Descriptor().FullName())
	}
	proto.Reset(res)
	proto.Merge(res, out)
	return nil
}

// interceptedCall runs a client call through interceptors: do performs the
// call itself (the request it is given may have been replaced).
func interceptedCall(ctx context.Context, spec Spec, peer Peer, req, res proto.Message, do func(context.Context, proto.Message) error, interceptors ...[]Interceptor) error {
	next := func(ctx context.Context, r *Request) (proto.Message, error) {
		if r == nil || r.Msg == nil {
			return nil, Errorf(CodeInternal, "interceptor passed no request message for %s", spec.Procedure)
		}
		if err := do(ctx, r.Msg); err != nil {
			return nil, err
		}
		if spec.OneWay {
			return nil, nil
		}
		return res, nil
	}
	out, err := chainUnary(next, interceptors...)(ctx, &Request{Spec: spec, Peer: peer, Msg: req})
	if err != nil {
		return err
	}
	if spec.OneWay {
		return nil
	}
	return adoptResponse(res, out)
}
