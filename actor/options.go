package actor

import (
	"fmt"
	"log/slog"
)

// Defaults used by NewMailbox when no option overrides them.
const (
	DefaultCapacity   = 1024
	DefaultThroughput = 64
)

// Option configures a Mailbox. Options are applied in order by NewMailbox.
type Option interface {
	applyToMailbox(*config)
}

type optionFunc func(*config)

func (f optionFunc) applyToMailbox(c *config) { f(c) }

type config struct {
	capacity     int
	throughput   int
	dispatcher   Dispatcher // nil: the dedicated drainer
	onPanic      func(recovered any, stack []byte)
	crashOnPanic bool
}

func newConfig(opts []Option) config {
	c := config{
		capacity:   DefaultCapacity,
		throughput: DefaultThroughput,
		dispatcher: nil, // the dedicated drainer
		onPanic:    logPanic,
	}
	for _, o := range opts {
		if o != nil {
			o.applyToMailbox(&c)
		}
	}
	if c.capacity < 1 {
		panic(fmt.Sprintf("actor: WithCapacity(%d): capacity must be positive", c.capacity))
	}
	if c.throughput < 1 {
		panic(fmt.Sprintf("actor: WithThroughput(%d): throughput must be positive", c.throughput))
	}
	return c
}

// WithCapacity bounds the mailbox to n messages (default 1024). When it is
// full, Post blocks and TryPost fails with ErrMailboxFull. n must be positive;
// NewMailbox panics otherwise.
func WithCapacity(n int) Option {
	return optionFunc(func(c *config) { c.capacity = n })
}

// WithThroughput sets how many messages one turn handles before it yields
// and reschedules itself through the Dispatcher (default 64), so that many
// busy mailboxes share the available goroutines fairly. The default
// dedicated drainer (see WithDispatcher) has a goroutine of its own and does
// not yield. n must be positive; NewMailbox panics otherwise.
func WithThroughput(n int) Option {
	return optionFunc(func(c *config) { c.throughput = n })
}

// WithDispatcher sets how turns are run. By default a mailbox has a
// dedicated drainer: one goroutine, started by the first post, that parks
// while the mailbox is empty and is woken by the next post, so that a
// message costs no goroutine start; it leaves once the mailbox is done or
// has been idle for a while (the next post starts it again). A nil
// Dispatcher restores the default.
func WithDispatcher(d Dispatcher) Option {
	return optionFunc(func(c *config) { c.dispatcher = d })
}

// WithPanicHandler sets the function called, on the drainer's goroutine, when
// the handler panics: it receives the recovered value and the stack of the
// panicking goroutine, and the mailbox then goes on with the next message.
// The default logs both through log/slog's default logger at level Error. A
// nil function restores the default. If f itself panics, that panic is not
// recovered.
func WithPanicHandler(f func(recovered any, stack []byte)) Option {
	return optionFunc(func(c *config) {
		if f == nil {
			f = logPanic
		}
		c.onPanic = f
	})
}

// WithCrashOnPanic makes a panicking handler crash the process ("let it
// crash"): the panic is not recovered, so it propagates out of the turn with
// its original stack, and the panic handler is not called. Unless the
// Dispatcher recovers it, the process dies. A mailbox whose handler crashed
// stays marked as running and handles nothing more.
func WithCrashOnPanic() Option {
	return optionFunc(func(c *config) { c.crashOnPanic = true })
}

func logPanic(recovered any, stack []byte) {
	slog.Error("actor: message handler panicked",
		slog.Any("panic", recovered),
		slog.String("stack", string(stack)))
}
