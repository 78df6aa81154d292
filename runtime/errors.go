package runtime

import (
	"context"
	"errors"
	"fmt"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/link"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// Code classifies an error, with the meanings of the gRPC and Connect codes
// of the same names. It travels on the wire as herd.v1.Code.
type Code uint32

// The codes herd uses. Values match herd.v1.Code.
const (
	CodeCanceled           = Code(herdv1.Code_CODE_CANCELED)
	CodeUnknown            = Code(herdv1.Code_CODE_UNKNOWN)
	CodeInvalidArgument    = Code(herdv1.Code_CODE_INVALID_ARGUMENT)
	CodeDeadlineExceeded   = Code(herdv1.Code_CODE_DEADLINE_EXCEEDED)
	CodeNotFound           = Code(herdv1.Code_CODE_NOT_FOUND)
	CodeAlreadyExists      = Code(herdv1.Code_CODE_ALREADY_EXISTS)
	CodePermissionDenied   = Code(herdv1.Code_CODE_PERMISSION_DENIED)
	CodeResourceExhausted  = Code(herdv1.Code_CODE_RESOURCE_EXHAUSTED)
	CodeFailedPrecondition = Code(herdv1.Code_CODE_FAILED_PRECONDITION)
	CodeAborted            = Code(herdv1.Code_CODE_ABORTED)
	CodeOutOfRange         = Code(herdv1.Code_CODE_OUT_OF_RANGE)
	CodeUnimplemented      = Code(herdv1.Code_CODE_UNIMPLEMENTED)
	CodeInternal           = Code(herdv1.Code_CODE_INTERNAL)
	CodeUnavailable        = Code(herdv1.Code_CODE_UNAVAILABLE)
	CodeDataLoss           = Code(herdv1.Code_CODE_DATA_LOSS)
	CodeUnauthenticated    = Code(herdv1.Code_CODE_UNAUTHENTICATED)
)

var codeNames = [...]string{
	CodeCanceled:           "canceled",
	CodeUnknown:            "unknown",
	CodeInvalidArgument:    "invalid_argument",
	CodeDeadlineExceeded:   "deadline_exceeded",
	CodeNotFound:           "not_found",
	CodeAlreadyExists:      "already_exists",
	CodePermissionDenied:   "permission_denied",
	CodeResourceExhausted:  "resource_exhausted",
	CodeFailedPrecondition: "failed_precondition",
	CodeAborted:            "aborted",
	CodeOutOfRange:         "out_of_range",
	CodeUnimplemented:      "unimplemented",
	CodeInternal:           "internal",
	CodeUnavailable:        "unavailable",
	CodeDataLoss:           "data_loss",
	CodeUnauthenticated:    "unauthenticated",
}

// String returns the code's name in snake case, as Connect spells it.
func (c Code) String() string {
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return fmt.Sprintf("code_%d", uint32(c))
}

// Error is the error of a call: a Code and the underlying cause. Handlers
// return one to choose the code the caller sees; callers inspect it with
// errors.As or CodeOf.
type Error struct {
	code Code
	err  error
}

// NewError returns an error with the given code wrapping underlying.
func NewError(c Code, underlying error) *Error {
	return &Error{code: c, err: underlying}
}

// Errorf returns an error with the given code and a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{code: c, err: fmt.Errorf(format, args...)}
}

// Code returns the error's code.
func (e *Error) Code() Code { return e.code }

// Message returns the underlying error's text, without the code.
func (e *Error) Message() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

// Error implements error: "code: message".
func (e *Error) Error() string {
	if m := e.Message(); m != "" {
		return e.code.String() + ": " + m
	}
	return e.code.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.err }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, runtime.NewError(runtime.CodeUnavailable, nil)) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.err == nil && t.code == e.code
}

// CodeOf returns the code of err: the code of the first *Error in its chain;
// CodeCanceled or CodeDeadlineExceeded for the context errors; CodeUnknown
// otherwise. CodeOf(nil) is 0.
func CodeOf(err error) Code {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.code
	}
	switch {
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	}
	return CodeUnknown
}

// Link errors, for errors.Is and errors.As.
var (
	// ErrLinkClosed: the link to the other side is closed. A link closed by
	// the peer also matches io.EOF.
	ErrLinkClosed = link.ErrLinkClosed
	// ErrFrameTooLarge: a frame exceeded the maximum frame size. Received, it
	// closes the link; sent, it fails only that call.
	ErrFrameTooLarge = wire.ErrFrameTooLarge
)

// ProtocolError is a malformed frame or envelope, a truncated frame or a
// wrong descriptor count; it closes the link it was seen on. Its Cause says
// what was wrong.
type ProtocolError = wire.ProtocolError
