package herdhttp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// drain follows srv's connections and, once started, ends them one by one
// as the package documentation says.
type drain struct {
	srv  *http.Server
	ln   net.Listener
	cfg  config
	user func(net.Conn, http.ConnState) // srv.ConnState as given

	draining atomic.Bool

	mu        sync.Mutex
	conns     map[net.Conn]*tracked
	serveDone bool
	changed   chan struct{} // a connection changed state, or Serve returned (while draining)

	startOnce sync.Once
	done      chan struct{} // closed when the drain has ended; err is set then
	err       error
	forceOnce sync.Once
	force     chan struct{} // closed to end the drain at once
}

// tracked is what the drain knows of one connection.
type tracked struct {
	state   http.ConnState
	since   time.Time // of the last state change
	c       *conn     // nil when the listener's connection was not wrapped (TLS)
	h2      bool      // HTTP/2 over TLS: Shutdown's GOAWAY ends it
	expired bool      // its read deadline was set to end it
}

func newDrain(srv *http.Server, ln net.Listener, cfg config) *drain {
	d := &drain{
		srv: srv, ln: ln, cfg: cfg, user: srv.ConnState,
		conns:   make(map[net.Conn]*tracked),
		changed: make(chan struct{}, 1),
		done:    make(chan struct{}),
		force:   make(chan struct{}),
	}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = d.handler(h)
	srv.ConnState = d.connState
	return d
}

// handler answers every HTTP/1 request that starts while draining with
// "Connection: close": net/http then closes the connection after the
// response, and the client knows not to send another on it.
func (d *drain) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 && d.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// connState is srv.ConnState: it follows every connection, then calls the
// user's hook.
func (d *drain) connState(nc net.Conn, st http.ConnState) {
	d.mu.Lock()
	switch st {
	case http.StateNew:
		t := &tracked{state: st, since: time.Now()}
		t.c, _ = nc.(*conn)
		d.conns[nc] = t
	case http.StateActive, http.StateIdle:
		if t := d.conns[nc]; t != nil {
			t.state, t.since, t.expired = st, time.Now(), false
			if !t.h2 {
				t.h2 = isH2(nc)
			}
			if st == http.StateIdle && t.c != nil {
				t.c.idle()
			}
		}
	case http.StateHijacked, http.StateClosed:
		delete(d.conns, nc)
	}
	d.mu.Unlock()
	if d.draining.Load() {
		d.notify()
	}
	if d.user != nil {
		d.user(nc, st)
	}
}

// isH2 reports whether nc speaks HTTP/2 (negotiated over TLS, or h2c with
// prior knowledge, which the wrapper sees).
func isH2(nc net.Conn) bool {
	switch c := nc.(type) {
	case *tls.Conn:
		return c.ConnectionState().NegotiatedProtocol == "h2"
	case *conn:
		return c.h2.Load()
	}
	return false
}

func (d *drain) notify() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

func (d *drain) isDraining() bool { return d.draining.Load() }

// serveReturned records that srv.Serve returned: every connection it
// accepted is tracked by now.
func (d *drain) serveReturned() {
	d.mu.Lock()
	d.serveDone = true
	d.mu.Unlock()
	d.notify()
}

// hook is the worker's drain hook: it starts the drain (the runtime has
// closed the listener already) and waits for it, up to ctx's end, when the
// connections left are closed.
func (d *drain) hook(ctx context.Context) error {
	d.start()
	select {
	case <-d.done:
	case <-ctx.Done():
		d.forceOnce.Do(func() { close(d.force) })
		<-d.done
	}
	return d.err
}

// start starts the drain, once.
func (d *drain) start() {
	d.startOnce.Do(func() {
		d.draining.Store(true)
		_ = d.ln.Close() // already closed when the runtime started a disconnect
		go d.run()
	})
}

// run is the drain: it ends the HTTP/1 connections, then shuts srv down.
func (d *drain) run() {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.timeout)
	defer cancel()
	go func() {
		select {
		case <-d.force:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer close(d.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, left := d.sweep(time.Now())
		if left == 0 {
			break
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-d.changed:
		case <-timer.C:
		case <-ctx.Done():
			d.srv.Close()
			d.err = fmt.Errorf("herdhttp: drain: connections closed at the deadline: %w", ctx.Err())
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
	// No HTTP/1 connection is left: Shutdown sends HTTP/2 connections
	// their GOAWAY and waits for their streams.
	if err := d.srv.Shutdown(ctx); err != nil {
		d.srv.Close()
		d.err = fmt.Errorf("herdhttp: drain: %w", err)
	}
}

// sweep ends the HTTP/1 connections that have waited for a request for the
// idle grace, and returns when the next one is due and how many HTTP/1
// connections are left (plus one while srv.Serve has not returned).
func (d *drain) sweep(now time.Time) (next time.Time, left int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.serveDone {
		left++
	}
	for nc, t := range d.conns {
		if t.h2 {
			continue
		}
		left++
		if t.expired || (t.state != http.StateNew && t.state != http.StateIdle) {
			continue // ends after its response, or its read deadline passed
		}
		due := t.since.Add(d.cfg.grace)
		if now.Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		if t.c != nil {
			if !t.c.expire() {
				// A request is arriving: its state changes soon; look
				// again after a grace in case it does not.
				t.since = now
				if next.IsZero() || now.Add(d.cfg.grace).Before(next) {
					next = now.Add(d.cfg.grace)
				}
				continue
			}
		} else {
			_ = nc.SetReadDeadline(aLongTimeAgo)
		}
		t.expired = true
	}
	return next, left
}

// aLongTimeAgo is a read deadline in the past: a blocked Read returns at
// once with a timeout.
var aLongTimeAgo = time.Unix(1, 0)
