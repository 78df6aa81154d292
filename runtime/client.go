package runtime

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// ClientConn is what generated clients call through: a Worker handle (calls
// to that worker), the worker side's Self (calls to the primary), or a Mux
// (in-process, for tests). Every ClientConn is also a SendConn.
type ClientConn interface {
	// Call sends req to procedure and waits for the response, decoded into
	// res. It honours ctx's deadline and cancellation; cancellation reaches
	// the callee's context. While the other side holds as many messages
	// (or bytes) as its mailbox takes, the request waits for room, within
	// ctx.
	Call(ctx context.Context, procedure string, req, res proto.Message, opts ...CallOption) error
	// Send sends req to procedure without waiting for a reply
	// (fire-and-forget, Node's send). It returns once the message is on its
	// way to a mailbox that has room for it: while the other side holds as
	// many messages (or bytes) as its mailbox takes, or before it has
	// started, Send waits, and fails with ctx's error if ctx ends first.
	Send(ctx context.Context, procedure string, req proto.Message, opts ...CallOption) error
}

// SendConn is what generated broadcast clients send through: the primary's
// Broadcast (every worker), or any ClientConn. It offers fire-and-forget
// sends only.
type SendConn interface {
	// Send sends req to procedure without waiting for a reply; see
	// ClientConn.Send.
	Send(ctx context.Context, procedure string, req proto.Message, opts ...CallOption) error
}

// CallOption configures one call.
type CallOption interface {
	applyToCall(*callConfig)
}

type callConfig struct {
	files         []syscall.Conn
	metadata      []string      // key, value pairs (WithMetadata)
	interceptors  []Interceptor // WithInterceptors
	responseFiles *[]*os.File   // WithResponseFiles
	lease         *Lease        // WithBorrowedResponse

	// system flags the frame for the receiver's control or reader lane:
	// set by controlConn only, for the runtime's own procedures.
	system bool
}

// flags are the wire flags of a call of a config that may be nil.
func (c *callConfig) flags() uint32 {
	if c != nil && c.system {
		return wire.FlagSystem
	}
	return 0
}

// responseFileList reads a config that may be nil.
func (c *callConfig) responseFileList() *[]*os.File {
	if c == nil {
		return nil
	}
	return c.responseFiles
}

// metadataList and interceptorList read a config that may be nil.
func (c *callConfig) metadataList() []string {
	if c == nil {
		return nil
	}
	return c.metadata
}

func (c *callConfig) interceptorList() []Interceptor {
	if c == nil || len(c.interceptors) == 0 {
		return nil
	}
	return c.interceptors
}

type callOptionFunc func(*callConfig)

func (f callOptionFunc) applyToCall(c *callConfig) { f(c) }

// WithFiles attaches open files, connections or listeners to the call
// (Node's send(message, handle)): their descriptors travel with the message
// and the handler gets duplicates from FilesFromContext (closed when it
// returns, unless it takes them with TakeFiles). The caller keeps
// its own copies and may close them once the call returns. *os.File,
// *net.TCPConn, *net.UnixConn, *net.TCPListener and *net.UnixListener all
// implement syscall.Conn.
func WithFiles(files ...syscall.Conn) CallOption {
	return callOptionFunc(func(c *callConfig) { c.files = append(c.files, files...) })
}

// ClientOption configures a Client.
type ClientOption interface {
	applyToClient(*clientConfig)
}

type clientConfig struct {
	callOptions []CallOption
}

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) applyToClient(c *clientConfig) { f(c) }

// WithCallOptions sets call options applied to every call of the client,
// before the call's own.
func WithCallOptions(opts ...CallOption) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.callOptions = append(c.callOptions, opts...) })
}

// Client calls one procedure with typed messages. Generated clients hold
// one per method.
type Client[Req, Res any] struct {
	conn      ClientConn
	procedure string
	opts      []CallOption
}

// NewClient returns a client of procedure over conn. Req and Res must be
// generated protobuf message types.
func NewClient[Req, Res any](conn ClientConn, procedure string, opts ...ClientOption) *Client[Req, Res] {
	if _, ok := any(new(Req)).(proto.Message); !ok {
		panic(fmt.Sprintf("herd: %s: request type %T is not a protobuf message", procedure, new(Req)))
	}
	if _, ok := any(new(Res)).(proto.Message); !ok {
		panic(fmt.Sprintf("herd: %s: response type %T is not a protobuf message", procedure, new(Res)))
	}
	var cfg clientConfig
	for _, o := range opts {
		o.applyToClient(&cfg)
	}
	return &Client[Req, Res]{conn: conn, procedure: procedure, opts: cfg.callOptions}
}

// Procedure returns the procedure the client calls.
func (c *Client[Req, Res]) Procedure() string { return c.procedure }

// Call sends req and waits for the response.
func (c *Client[Req, Res]) Call(ctx context.Context, req *Req, opts ...CallOption) (*Res, error) {
	res := new(Res)
	if err := c.conn.Call(ctx, c.procedure, any(req).(proto.Message), any(res).(proto.Message), c.merge(opts)...); err != nil {
		return nil, err
	}
	return res, nil
}

// Send sends req without waiting for a reply (fire-and-forget).
func (c *Client[Req, Res]) Send(ctx context.Context, req *Req, opts ...CallOption) error {
	return c.conn.Send(ctx, c.procedure, any(req).(proto.Message), c.merge(opts)...)
}

func (c *Client[Req, Res]) merge(opts []CallOption) []CallOption {
	return mergeCallOptions(c.opts, opts)
}

// mergeCallOptions returns a client's options followed by a call's.
func mergeCallOptions(client, call []CallOption) []CallOption {
	if len(client) == 0 {
		return call
	}
	if len(call) == 0 {
		return client
	}
	all := make([]CallOption, 0, len(client)+len(call))
	return append(append(all, client...), call...)
}

// SendClient sends fire-and-forget messages of one procedure with a typed
// request. Generated broadcast clients hold one per method.
type SendClient[Req any] struct {
	conn      SendConn
	procedure string
	opts      []CallOption
}

// NewSendClient returns a fire-and-forget client of procedure over conn.
// Req must be a generated protobuf message type.
func NewSendClient[Req any](conn SendConn, procedure string, opts ...ClientOption) *SendClient[Req] {
	if _, ok := any(new(Req)).(proto.Message); !ok {
		panic(fmt.Sprintf("herd: %s: request type %T is not a protobuf message", procedure, new(Req)))
	}
	var cfg clientConfig
	for _, o := range opts {
		o.applyToClient(&cfg)
	}
	return &SendClient[Req]{conn: conn, procedure: procedure, opts: cfg.callOptions}
}

// Procedure returns the procedure the client sends to.
func (c *SendClient[Req]) Procedure() string { return c.procedure }

// Send sends req without waiting for a reply (fire-and-forget).
func (c *SendClient[Req]) Send(ctx context.Context, req *Req, opts ...CallOption) error {
	return c.conn.Send(ctx, c.procedure, any(req).(proto.Message), mergeCallOptions(c.opts, opts)...)
}
