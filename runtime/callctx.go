package runtime

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The context of a request/response call a peer made.
//
// Every call the peer makes gets a context that ends when the caller
// cancels it (a Cancel frame), when the link ends, when the caller's
// deadline passes, or when the handler returns. context.WithCancel would
// do, but costs two allocations (the context and its CancelFunc) and a
// little work on each side of every call, which is a visible share of a
// small round trip. callCtx does the same in one allocation, and makes its
// Done channel only when someone asks for it: most handlers never do.
//
// A context derived from a callCtx (context.WithCancel, WithTimeout,
// AfterFunc) is tied to it through its AfterFunc method, which the context
// package uses for a parent that is not one of its own types: no goroutine
// is started per derived context.

// callCtx is the context of one call from the peer. Its zero value is not
// usable: newCallCtx makes one.
type callCtx struct {
	parent   context.Context
	id       uint64 // the call's id (endpoint.inflight)
	deadline int64  // Unix nanoseconds; 0: none

	done atomic.Value // chan struct{}, made by Done or closed by cancel

	mu  sync.Mutex
	err error         // set once, by cancel
	x   *callCtxExtra // what few calls need; under mu
}

// callCtxExtra is the rarely used part of a callCtx.
type callCtxExtra struct {
	afters map[*callAfter]struct{} // AfterFunc's functions not yet run or stopped
	timer  *time.Timer             // the deadline's, if any
	stopP  func() bool             // ends the tie to a parent that can end
}

// callAfter is one AfterFunc registration.
type callAfter struct{ f func() }

// closedDone is the Done channel of a context ended before anyone asked.
var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// newCallCtx returns the context of call id, a child of parent that ends
// at deadline (Unix nanoseconds; 0: none). The caller must call cancel
// once the call is done.
func newCallCtx(parent context.Context, id uint64, deadline int64) *callCtx {
	c := &callCtx{parent: parent, id: id, deadline: deadline}
	if parent.Done() != nil {
		// Only the primary's handlers have a parent that ends (the
		// worker's handler context). context.AfterFunc ends the call with
		// it without a goroutine of its own when the parent is one of
		// the context package's.
		stop := context.AfterFunc(parent, func() { c.cancel(parentErr(parent)) })
		c.mu.Lock()
		c.extra().stopP = stop
		c.mu.Unlock()
		if err := parent.Err(); err != nil {
			c.cancel(err) // ended already: now, not in AfterFunc's goroutine
			return c
		}
	}
	if deadline != 0 {
		d := time.Until(time.Unix(0, deadline))
		if d <= 0 {
			c.cancel(context.DeadlineExceeded)
			return c
		}
		c.mu.Lock()
		if c.err == nil {
			c.extra().timer = time.AfterFunc(d, func() { c.cancel(context.DeadlineExceeded) })
		}
		c.mu.Unlock()
	}
	return c
}

// extra returns c.x, made on first use; c.mu is held.
func (c *callCtx) extra() *callCtxExtra {
	if c.x == nil {
		c.x = new(callCtxExtra)
	}
	return c.x
}

// parentErr is the error a call ended by its parent reports.
func parentErr(parent context.Context) error {
	if err := parent.Err(); err != nil {
		return err
	}
	return context.Canceled
}

// Deadline implements context.Context: the caller's deadline, or the
// parent's if that is earlier.
func (c *callCtx) Deadline() (time.Time, bool) {
	pd, ok := c.parent.Deadline()
	if c.deadline == 0 {
		return pd, ok
	}
	d := time.Unix(0, c.deadline)
	if ok && pd.Before(d) {
		return pd, true
	}
	return d, true
}

// Done implements context.Context; the channel is made on the first call.
func (c *callCtx) Done() <-chan struct{} {
	if d := c.done.Load(); d != nil {
		return d.(chan struct{})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.done.Load()
	if d == nil {
		d = make(chan struct{})
		c.done.Store(d)
	}
	return d.(chan struct{})
}

// Err implements context.Context.
func (c *callCtx) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	return err
}

// Value implements context.Context: the parent's values. (The context
// package finds its own cancelable parent through Value, but takes it as
// the parent of a derived context only if its Done channel is c's, which
// it never is: derived contexts go through AfterFunc.)
func (c *callCtx) Value(key any) any { return c.parent.Value(key) }

// AfterFunc arranges for f to run once c ends (in its own goroutine if it
// has ended already), and returns a function that stops that, reporting
// whether it did. The context package uses it to tie derived contexts to
// c (see context.AfterFunc): no goroutine waits for c per derived context.
func (c *callCtx) AfterFunc(f func()) func() bool {
	a := &callAfter{f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	x := c.extra()
	if x.afters == nil {
		x.afters = make(map[*callAfter]struct{})
	}
	x.afters[a] = struct{}{}
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.x == nil {
			return false // ended: f runs or has run
		}
		if _, ok := c.x.afters[a]; !ok {
			return false
		}
		delete(c.x.afters, a)
		return true
	}
}

// cancel ends c with err, unless it has ended already.
func (c *callCtx) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if d := c.done.Load(); d != nil {
		close(d.(chan struct{}))
	} else {
		c.done.Store(closedDone)
	}
	x := c.x
	c.x = nil
	c.mu.Unlock()
	if x == nil {
		return
	}
	for a := range x.afters {
		// The context package's own functions (derived contexts,
		// context.AfterFunc's), which only end a context: run here, so
		// that what derives from c has ended when cancel returns, as with
		// the context package's own parents.
		a.f()
	}
	if x.timer != nil {
		x.timer.Stop()
	}
	if x.stopP != nil {
		x.stopP()
	}
}

// String describes c, like the context package's own contexts.
func (c *callCtx) String() string { return "herd.callContext" }

// inflight is the set of calls from the peer being served, by id, for the
// peer's Cancel frames and for the end of the link. A call is added by the
// reader and removed by whoever served it. Most of the time there is one
// call at a time (a caller waits for its reply): it takes the one slot,
// with no lock and no map; the others go to the map.
type inflight struct {
	one atomic.Pointer[callCtx]
	mu  sync.Mutex
	m   map[uint64]*callCtx
}

// add registers c.
func (f *inflight) add(c *callCtx) {
	if f.one.CompareAndSwap(nil, c) {
		return
	}
	f.mu.Lock()
	if f.m == nil {
		f.m = make(map[uint64]*callCtx)
	}
	f.m[c.id] = c
	f.mu.Unlock()
}

// remove forgets c.
func (f *inflight) remove(c *callCtx) {
	if f.one.CompareAndSwap(c, nil) {
		return
	}
	f.mu.Lock()
	if f.m[c.id] == c {
		delete(f.m, c.id)
	}
	f.mu.Unlock()
}

// cancel ends call id, if it is being served. (A peer that gives two
// calls the same id in flight has the first found canceled.)
func (f *inflight) cancel(id uint64) {
	if c := f.one.Load(); c != nil && c.id == id {
		c.cancel(context.Canceled)
		return
	}
	f.mu.Lock()
	c := f.m[id]
	f.mu.Unlock()
	if c != nil {
		c.cancel(context.Canceled)
	}
}

// cancelAll ends every call being served.
func (f *inflight) cancelAll() {
	if c := f.one.Load(); c != nil {
		c.cancel(context.Canceled)
	}
	f.mu.Lock()
	cs := make([]*callCtx, 0, len(f.m))
	for _, c := range f.m {
		cs = append(cs, c)
	}
	f.mu.Unlock()
	for _, c := range cs {
		c.cancel(context.Canceled)
	}
}

// busy reports whether a call is being served.
func (f *inflight) busy() bool {
	if f.one.Load() != nil {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m) > 0
}
