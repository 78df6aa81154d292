// Package callapi is the smallest package that code generated with the
// runtime_import option can call: it declares every identifier of the
// runtime that generated code refers to (runtimeAPI in names.go), with the
// runtime's meanings, and imports nothing of herd. The internalapi golden
// case is generated against it, which shows that such code compiles and
// runs without herd's runtime, as code inside a package the runtime
// imports must. Mux, which generated code does not use, serves the tests.
package callapi

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"
)

// IsAtLeastVersion0_2_0 is the version assertion of generated code.
const IsAtLeastVersion0_2_0 = true

// Code classifies an error.
type Code uint32

// CodeUnimplemented is the code of a method without an implementation.
const CodeUnimplemented Code = 12

// Error is an error with a Code.
type Error struct {
	Code Code
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("code %d: %v", e.Code, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an error with the given code and a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Err: fmt.Errorf(format, args...)}
}

// CallOption configures one call; this package has none.
type CallOption interface{ callOption() }

// ClientOption configures a client; this package has none.
type ClientOption interface{ clientOption() }

// HandlerOption configures a handler; this package has none.
type HandlerOption interface{ handlerOption() }

// SendConn sends fire-and-forget messages.
type SendConn interface {
	Send(ctx context.Context, procedure string, req proto.Message, opts ...CallOption) error
}

// ClientConn calls procedures.
type ClientConn interface {
	SendConn
	Call(ctx context.Context, procedure string, req, res proto.Message, opts ...CallOption) error
}

// Client calls one procedure with typed messages.
type Client[Req, Res any] struct {
	conn      ClientConn
	procedure string
}

// NewClient returns a client of procedure over conn.
func NewClient[Req, Res any](conn ClientConn, procedure string, _ ...ClientOption) *Client[Req, Res] {
	return &Client[Req, Res]{conn: conn, procedure: procedure}
}

// Call sends req and waits for the response.
func (c *Client[Req, Res]) Call(ctx context.Context, req *Req, opts ...CallOption) (*Res, error) {
	res := new(Res)
	if err := c.conn.Call(ctx, c.procedure, any(req).(proto.Message), any(res).(proto.Message), opts...); err != nil {
		return nil, err
	}
	return res, nil
}

// Send sends req without waiting.
func (c *Client[Req, Res]) Send(ctx context.Context, req *Req, opts ...CallOption) error {
	return c.conn.Send(ctx, c.procedure, any(req).(proto.Message), opts...)
}

// SendClient sends fire-and-forget messages of one procedure.
type SendClient[Req any] struct {
	conn      SendConn
	procedure string
}

// NewSendClient returns a fire-and-forget client of procedure over conn.
func NewSendClient[Req any](conn SendConn, procedure string, _ ...ClientOption) *SendClient[Req] {
	return &SendClient[Req]{conn: conn, procedure: procedure}
}

// Send sends req without waiting.
func (c *SendClient[Req]) Send(ctx context.Context, req *Req, opts ...CallOption) error {
	return c.conn.Send(ctx, c.procedure, any(req).(proto.Message), opts...)
}

// Handler serves one procedure.
type Handler struct {
	procedure string
	call      func(context.Context, proto.Message) (proto.Message, error)
}

// NewUnaryHandler returns a Handler for procedure that calls fn.
func NewUnaryHandler[Req, Res any](procedure string, fn func(context.Context, *Req) (*Res, error), _ ...HandlerOption) *Handler {
	return &Handler{
		procedure: procedure,
		call: func(ctx context.Context, req proto.Message) (proto.Message, error) {
			res, err := fn(ctx, any(req).(*Req))
			if err != nil || res == nil {
				return nil, err
			}
			return any(res).(proto.Message), nil
		},
	}
}

// Registrar is where handlers are registered.
type Registrar interface {
	Register(handlers ...*Handler) error
}

// Mux is an in-process Registrar and ClientConn.
type Mux struct {
	mu       sync.Mutex
	handlers map[string]*Handler
}

// Register implements Registrar.
func (m *Mux) Register(handlers ...*Handler) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.handlers == nil {
		m.handlers = make(map[string]*Handler)
	}
	for _, h := range handlers {
		if _, ok := m.handlers[h.procedure]; ok {
			return errors.New("duplicate procedure " + h.procedure)
		}
		m.handlers[h.procedure] = h
	}
	return nil
}

func (m *Mux) handler(procedure string) (*Handler, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := m.handlers[procedure]; h != nil {
		return h, nil
	}
	return nil, Errorf(CodeUnimplemented, "procedure %s is not registered", procedure)
}

// Call implements ClientConn.
func (m *Mux) Call(ctx context.Context, procedure string, req, res proto.Message, _ ...CallOption) error {
	h, err := m.handler(procedure)
	if err != nil {
		return err
	}
	out, err := h.call(ctx, req)
	if err != nil {
		return err
	}
	if out != nil {
		proto.Merge(res, out)
	}
	return nil
}

// Send implements SendConn.
func (m *Mux) Send(ctx context.Context, procedure string, req proto.Message, _ ...CallOption) error {
	h, err := m.handler(procedure)
	if err != nil {
		return err
	}
	_, err = h.call(ctx, req)
	return err
}
