package actor

import (
	"context"
	"errors"
)

var (
	// ErrMailboxFull is returned when the mailbox has no free slot: by TryPost
	// at once, and by Post when its context ends while it waits for
	// space. The error returned by Post in that case also matches the context's
	// error (and its cause, if one was set) with errors.Is.
	ErrMailboxFull = errors.New("actor: mailbox full")

	// ErrMailboxClosed is returned by every post after Close, and by Post calls
	// that were blocked waiting for space when Close was called.
	ErrMailboxClosed = errors.New("actor: mailbox closed")
)

// fullError is what Post returns when its context ends while the mailbox is
// full. It matches ErrMailboxFull, the context's error and, when the context
// was cancelled with a cause, that cause.
type fullError struct {
	ctxErr error
	cause  error // context.Cause, when it differs from ctxErr; else nil
}

func newFullError(ctx context.Context) error {
	e := &fullError{ctxErr: ctx.Err()}
	if c := context.Cause(ctx); c != nil && c != e.ctxErr {
		e.cause = c
	}
	return e
}

func (e *fullError) Error() string {
	msg := ErrMailboxFull.Error() + ": " + e.ctxErr.Error()
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

func (e *fullError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrMailboxFull, e.ctxErr, e.cause}
	}
	return []error{ErrMailboxFull, e.ctxErr}
}
