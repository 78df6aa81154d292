package herdhttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Worker is what Serve needs of a herd worker: a place for its drain hook.
// *runtime.Self is one.
type Worker interface {
	// OnDisconnect adds a drain hook that runs when the worker's
	// disconnect starts, after its cluster listeners closed.
	OnDisconnect(hook func(ctx context.Context) error)
}

// The defaults of Serve's options.
const (
	// DefaultIdleGrace is how long a connection waiting for a request must
	// have been quiet before a drain closes it.
	DefaultIdleGrace = 500 * time.Millisecond
	// DefaultDrainTimeout bounds a drain that the worker's disconnect did
	// not start (ctx ending, the listener closing), as the runtime's own
	// drain timeout bounds a disconnect.
	DefaultDrainTimeout = 30 * time.Second
)

// Option configures Serve.
type Option interface{ apply(*config) }

type config struct {
	grace   time.Duration
	timeout time.Duration
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithIdleGrace sets how long a connection that waits for a request (new,
// or idle between two requests) must have been quiet before the drain
// closes it (DefaultIdleGrace). A client that sends its next request within
// it gets an answer, with "Connection: close"; a longer grace protects
// slower clients and makes a drain with idle clients last longer.
func WithIdleGrace(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d >= 0 {
			c.grace = d
		}
	})
}

// WithDrainTimeout bounds a drain started by ctx ending or by the
// listener closing on its own (DefaultDrainTimeout); a drain the worker's
// disconnect starts ends at the disconnect's deadline. At the end the
// connections left are closed.
func WithDrainTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// Serve serves HTTP with srv on ln until the worker w disconnects, ln is
// closed or ctx ends, then drains srv without failing a request (see the
// package documentation) and returns: nil when every connection ended
// cleanly, an error wrapping the context's error when the drain's deadline
// closed some, or the error that stopped srv.Serve when it was not the
// listener closing. w may be nil outside a cluster.
//
// Serve takes over srv: it wraps srv.Handler (nil: http.DefaultServeMux) to
// answer with "Connection: close" while draining, and srv.ConnState (which
// it still calls) to follow the connections. Call Serve once per srv; do
// not call srv.Shutdown or srv.Close while it runs.
func Serve(ctx context.Context, w Worker, srv *http.Server, ln net.Listener, opts ...Option) error {
	cfg := config{grace: DefaultIdleGrace, timeout: DefaultDrainTimeout}
	for _, o := range opts {
		o.apply(&cfg)
	}
	d := newDrain(srv, ln, cfg)
	if w != nil {
		w.OnDisconnect(d.hook)
	}
	served := make(chan error, 1)
	go func() {
		err := srv.Serve(&listener{Listener: ln, d: d})
		d.serveReturned()
		served <- err
	}()
	consumed := false
	select {
	case err := <-served:
		consumed = true
		if !isClosed(err) && !d.isDraining() {
			return fmt.Errorf("herdhttp: serve: %w", err)
		}
		d.start() // the listener closed: the worker's disconnect is under way, or the user closed it
	case <-ctx.Done():
		d.start()
	case <-d.done: // the disconnect's drain ran
	}
	<-d.done
	if !consumed {
		<-served // a drain ends after srv.Serve has returned
	}
	return d.err
}

// isClosed reports whether err is srv.Serve's error for a closed listener.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed)
}
