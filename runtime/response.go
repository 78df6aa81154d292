package runtime

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"google.golang.org/protobuf/proto"
)

// Response is a handler's reply with more than a message, as connect-go's
// *connect.Response is: files attached to the reply (Node's
// send(message, handle), for replies) and a step that runs once the reply
// has been written to the link. A handler returns one when it is registered
// with NewResponseHandler, which code generated with the plugin's responses
// option does for every method of the service:
//
//	func (s *server) Open(ctx context.Context, req *filesv1.OpenRequest) (*runtime.Response[filesv1.OpenResponse], error) {
//		f, err := os.Open(req.GetPath())
//		if err != nil {
//			return nil, runtime.NewError(runtime.CodeNotFound, err)
//		}
//		defer f.Close()
//		return runtime.NewResponse(&filesv1.OpenResponse{}).AttachFiles(f), nil
//	}
//
// The caller receives the files with WithResponseFiles. A response that
// carries nothing but its message is NewResponse(msg).
type Response[T any] struct {
	// Msg is the response message; nil answers with an empty one.
	Msg *T

	extras replyExtras
}

// replyExtras is what a Response carries beside its message.
type replyExtras struct {
	fds   []int  // attached to the reply, owned: closed once it is sent (or not)
	after func() // runs once the reply is written to the link (or failed)
	err   error  // an attachment failed: the reply is this error
}

// NewResponse returns a Response carrying msg.
func NewResponse[T any](msg *T) *Response[T] { return &Response[T]{Msg: msg} }

// AttachFiles attaches duplicates of the descriptors of files to the reply
// (Node's send(message, handle)): the caller receives them with
// WithResponseFiles. The handler keeps its own copies and may close them once
// AttachFiles returns. When a descriptor cannot be duplicated, the reply is a
// CodeInternal error instead. *os.File, *net.TCPConn, *net.UnixConn,
// *net.TCPListener and *net.UnixListener implement syscall.Conn.
func (r *Response[T]) AttachFiles(files ...syscall.Conn) *Response[T] {
	for _, c := range files {
		if r.extras.err != nil {
			break
		}
		fd, err := dupConn(c)
		if err != nil {
			r.extras.err = Errorf(CodeInternal, "attach file to the response: %v", err)
			break
		}
		r.extras.fds = append(r.extras.fds, fd)
	}
	return r
}

// attachFDs attaches descriptors the response takes over: they are closed
// once the reply is sent, or when it cannot be.
func (r *Response[T]) attachFDs(fds []int) *Response[T] {
	r.extras.fds = append(r.extras.fds, fds...)
	return r
}

// AfterReply makes fn run once the reply has been written to the link (or
// could not be), on the goroutine that ran the handler and before it runs
// the next message: what fn sends the caller arrives after the reply.
// In-process (Mux.Call) fn runs once the handler has returned. A later call
// replaces fn.
func (r *Response[T]) AfterReply(fn func()) *Response[T] {
	r.extras.after = fn
	return r
}

// release closes what the extras hold, and runs the after step, when the
// reply is not sent.
func (x *replyExtras) release() {
	for _, fd := range x.fds {
		closeFD(fd)
	}
	x.fds = nil
	if x.after != nil {
		after := x.after
		x.after = nil
		after()
	}
}

// replySlot carries, in a handler's context, where a Response handler
// leaves its extras for the code that writes the reply: per call, since the
// lanes of one link run handlers concurrently.
type replySlot struct{ extras replyExtras }

type replySlotKey struct{}

// withReplySlot returns ctx carrying a new slot for one call of a Response
// handler.
func withReplySlot(ctx context.Context) (context.Context, *replySlot) {
	s := &replySlot{}
	return context.WithValue(ctx, replySlotKey{}, s), s
}

// NewResponseHandler returns a Handler for procedure whose fn returns a
// *Response: a handler that attaches files to its reply or runs a step after
// it (see Response). Otherwise it is NewUnaryHandler. Outside a link's call
// (a fire-and-forget message, which has no reply) the files are closed and
// the step runs once fn returns.
func NewResponseHandler[Req, Res any](procedure string, fn func(context.Context, *Req) (*Response[Res], error), opts ...HandlerOption) *Handler {
	checkMessageTypes[Req, Res](procedure)
	return newHandler[Req](procedure, func(ctx context.Context, req proto.Message) (proto.Message, error) {
		res, err := fn(ctx, req.(any).(*Req))
		if res != nil && res.extras.err != nil {
			res.extras.release()
			return nil, res.extras.err
		}
		if res != nil {
			if s, _ := ctx.Value(replySlotKey{}).(*replySlot); s != nil {
				s.extras = res.extras
			} else {
				res.extras.release()
			}
		}
		if err != nil || res == nil || res.Msg == nil {
			return nil, err
		}
		return any(res.Msg).(proto.Message), nil
	}, true, opts)
}

// NewEventHandler returns a Handler for procedure whose fn returns only an
// error: for events and other one-way messages, whose response no one reads
// (a call of it is answered with an empty response). Code generated for a
// service of the plugin's handler_only option registers its methods that
// return google.protobuf.Empty with it, as the cluster events
// (herd.v1.EventService) are.
func NewEventHandler[Req any](procedure string, fn func(context.Context, *Req) error, opts ...HandlerOption) *Handler {
	if _, ok := any(new(Req)).(proto.Message); !ok {
		panic(fmt.Sprintf("herd: %s: request type %T is not a protobuf message", procedure, new(Req)))
	}
	return newHandler[Req](procedure, func(ctx context.Context, req proto.Message) (proto.Message, error) {
		return nil, fn(ctx, req.(any).(*Req))
	}, false, opts)
}

// WithResponseFiles stores in *dst the files attached to the response (see
// Response.AttachFiles); the caller owns them and closes them. Without it,
// files attached to a response are closed on arrival.
func WithResponseFiles(dst *[]*os.File) CallOption {
	return callOptionFunc(func(c *callConfig) { c.responseFiles = dst })
}

// fdsToFiles wraps received descriptors, which it takes over, in files.
func fdsToFiles(fds []int) []*os.File {
	if len(fds) == 0 {
		return nil
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "herd-response-file")
	}
	return files
}
