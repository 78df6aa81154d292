package actor

import (
	"context"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Drainer status, held in Mailbox.status.
const (
	idle    int32 = iota // no turn is scheduled or running
	running              // exactly one turn is scheduled or running
)

// Mailbox is a bounded queue drained by at most one goroutine at a time.
// Messages (Post, TryPost) are handled in the order they were posted. The
// handler is never called concurrently with itself for one Mailbox.
//
// A Mailbox must be created with NewMailbox. All methods are safe for
// concurrent use.
type Mailbox[M any] struct {
	handle func(M)
	cfg    config
	turnFn func() // m.turn, bound once so scheduling does not allocate

	status atomic.Int32 // idle or running

	// work mirrors, for lock-free checks, what the drainer has to do:
	// the queued messages, plus one while the mailbox is closed and done
	// is not closed yet. isClosed mirrors closed. Both are written under
	// mu (syncLocked) and read without it: by TryHandle, and by release,
	// which must look after its Store(idle) (see there).
	work     atomic.Int32
	isClosed atomic.Bool

	// The dedicated drainer (no Dispatcher set): one goroutine that lives
	// while the mailbox is in use. alive says it exists; it is read and
	// written only by whoever holds the running status. wake carries a
	// poster's hand-over of the running status to the parked drainer.
	alive  bool
	wake   chan struct{}
	linger time.Duration // drainerLinger; shorter in tests

	mu         sync.Mutex
	user       ring[M]
	waiters    int  // Post calls blocked on a full queue
	closed     bool // Close was called
	doneClosed bool // done has been closed

	space    chan struct{} // capacity 1: a token saying a user slot was freed
	closedCh chan struct{} // closed by Close, releases blocked Post calls
	done     chan struct{} // closed when closed and drained

	// Test hooks, nil outside tests.
	hookBeforeIdle func() // called by the drainer between the empty check and going idle
	hookWait       func() // called by Post after it registered as a waiter, before it blocks
}

// NewMailbox returns an empty, open Mailbox whose drainer passes each message
// to handle. It panics if handle is nil or an option has an invalid value.
func NewMailbox[M any](handle func(M), opts ...Option) *Mailbox[M] {
	if handle == nil {
		panic("actor: NewMailbox: nil handler")
	}
	cfg := newConfig(opts)
	m := &Mailbox[M]{
		handle:   handle,
		cfg:      cfg,
		user:     newRing[M](cfg.capacity),
		space:    make(chan struct{}, 1),
		closedCh: make(chan struct{}),
		done:     make(chan struct{}),
	}
	m.turnFn = m.turn
	if cfg.dispatcher == nil {
		m.wake = make(chan struct{}, 1)
		m.linger = drainerLinger
	}
	return m
}

// Post appends msg to the queue. While the queue is full it blocks until a
// slot frees, the mailbox is closed, or ctx is done. If ctx ends first, the
// error matches both ErrMailboxFull and ctx.Err() (and the context's cause)
// with errors.Is. After Close, or if Close is called while Post is blocked, it
// returns ErrMailboxClosed. If there is room, Post succeeds even when ctx is
// already done.
//
// The handler must not call Post on its own mailbox: if the queue is full it
// would wait for itself forever. Use TryPost there.
func (m *Mailbox[M]) Post(ctx context.Context, msg M) error {
	m.mu.Lock()
	for {
		if m.closed {
			m.mu.Unlock()
			return ErrMailboxClosed
		}
		if !m.user.full() {
			m.user.push(msg)
			m.syncLocked()
			m.passSpaceLocked()
			m.mu.Unlock()
			m.schedule()
			return nil
		}
		// Loop after the wait: take the slot if it is still free, else wait
		// again.
		if err := m.waitSpaceLocked(ctx); err != nil {
			return err
		}
	}
}

// waitSpaceLocked waits, with m.mu held on entry, for a slot to free. It
// returns nil with m.mu held again, or, with m.mu released, the error Post
// returns when ctx ends first or the mailbox is closed.
func (m *Mailbox[M]) waitSpaceLocked(ctx context.Context) error {
	if ctx.Err() != nil {
		m.mu.Unlock()
		return newFullError(ctx)
	}
	m.waiters++
	m.mu.Unlock()
	if m.hookWait != nil {
		m.hookWait()
	}
	select {
	case <-m.space:
		m.mu.Lock()
		m.waiters--
		return nil
	case <-ctx.Done():
		m.mu.Lock()
		m.waiters--
		m.mu.Unlock()
		return newFullError(ctx)
	case <-m.closedCh:
		m.mu.Lock()
		m.waiters--
		m.mu.Unlock()
		return ErrMailboxClosed
	}
}

// TryPost appends msg to the queue if it has room. It never blocks: it
// returns ErrMailboxFull if the queue is full and ErrMailboxClosed after Close.
func (m *Mailbox[M]) TryPost(msg M) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrMailboxClosed
	}
	if m.user.full() {
		m.mu.Unlock()
		return ErrMailboxFull
	}
	m.user.push(msg)
	m.syncLocked()
	m.passSpaceLocked()
	m.mu.Unlock()
	m.schedule()
	return nil
}

// PostBatch appends msgs to the queue, in order, as Post would one by one,
// but taking the lock and waking the drainer once for as many of them as
// fit, not once per message: it is how a reader that decoded several
// messages from one read hands them over. While the queue is full it
// blocks as Post does (then the messages posted so far are already being
// handled, and other posters may get in between two parts of the batch;
// the batch's own order always holds). It returns how many of msgs were
// posted, all of them unless the error is not nil (the same errors as
// Post); the caller still owns the rest.
func (m *Mailbox[M]) PostBatch(ctx context.Context, msgs []M) (int, error) {
	posted := 0
	m.mu.Lock()
	for posted < len(msgs) {
		if m.closed {
			m.mu.Unlock()
			return posted, ErrMailboxClosed
		}
		if !m.user.full() {
			for posted < len(msgs) && !m.user.full() {
				m.user.push(msgs[posted])
				posted++
			}
			m.syncLocked()
			m.passSpaceLocked()
			if posted == len(msgs) {
				break
			}
			// Full before the end: let the drainer start on what is
			// queued, then wait for room like Post.
			m.mu.Unlock()
			m.schedule()
			m.mu.Lock()
			continue
		}
		if err := m.waitSpaceLocked(ctx); err != nil {
			return posted, err
		}
	}
	m.mu.Unlock()
	if posted > 0 {
		m.schedule()
	}
	return posted, nil
}

// TryHandle handles msg on the calling goroutine, before it returns, if the
// mailbox is idle and empty, and reports whether it did; else it
// does nothing and returns false (post msg then). It is what a reader
// that would post to an idle mailbox and wait for nothing calls to save the
// hand-off to the drainer: msg is handled exactly as if it had been posted
// (in order: nothing else was queued, and messages posted meanwhile wait
// for it; the handler never overlaps itself; panics are handled the same
// way). Messages posted while it runs are handled by the drainer once it
// returns. before, if not nil, is called once the mailbox is claimed, just
// before the handler.
func (m *Mailbox[M]) TryHandle(msg M, before func()) bool {
	if !m.Claim() {
		return false
	}
	// Claimed. The queue was empty when we looked, so msg goes first:
	// a message pushed after that look, by another goroutine, was posted
	// later and waits for msg (its poster finds the status running, or
	// claimed it first and then our claim failed).
	if before != nil {
		before()
	}
	m.invoke(msg)
	m.Unclaim()
	return true
}

// Claim takes the mailbox for the calling goroutine if it is idle, empty
// and open, as TryHandle does before it handles its message, and reports
// whether it did. While the caller holds the claim no drainer runs:
// messages posted meanwhile are queued, and the caller may handle messages
// itself with HandleClaimed, in order with them. It is how a reader that
// decodes a run of messages handles them one after another without taking
// and giving back the mailbox for each. The caller must give the claim
// back with Unclaim, and must not wait for room in the mailbox (Post,
// PostBatch) while it holds it: nothing would make room.
func (m *Mailbox[M]) Claim() bool {
	// Lock-free: an idle status is stored after the drainer's last look
	// at the queue, and work is updated under mu before a poster looks at
	// the status, so a message queued before our claim is seen here or
	// makes the claim fail.
	return m.status.Load() == idle && m.work.Load() == 0 && !m.isClosed.Load() &&
		m.status.CompareAndSwap(idle, running)
}

// HandleClaimed handles msg on the calling goroutine, which holds the claim
// (Claim), if nothing was posted since the claim was taken and the mailbox
// is still open, and reports whether it did; before, if not nil, is called
// just before the handler. On false nothing was done: the caller gives the
// claim back (Unclaim) and posts msg, after what is queued.
func (m *Mailbox[M]) HandleClaimed(msg M, before func()) bool {
	if m.work.Load() != 0 || m.isClosed.Load() {
		return false
	}
	if before != nil {
		before()
	}
	m.invoke(msg)
	return true
}

// RunClaimed is HandleClaimed for a caller that handles the message
// itself: if nothing was posted since the claim was taken and the mailbox
// is still open, it calls fn on the calling goroutine, which holds the
// claim, in place of the handler, and reports true; else it does nothing
// and reports false. A panic in fn is handled as one in the handler. It
// lets a caller whose messages are large pass one by pointer, where
// HandleClaimed copies it (into the handler's argument); fn is typically a
// method value bound once, reading the message from the caller's state.
func (m *Mailbox[M]) RunClaimed(fn func()) (ran bool) {
	if m.work.Load() != 0 || m.isClosed.Load() {
		return false
	}
	if m.cfg.crashOnPanic {
		fn()
		return true
	}
	defer func() {
		if r := recover(); r != nil {
			m.cfg.onPanic(r, debug.Stack())
		}
	}()
	ran = true // also when fn panics
	fn()
	return ran
}

// Unclaim gives back the claim taken by Claim: messages posted while it
// was held are handed to the drainer.
func (m *Mailbox[M]) Unclaim() {
	if m.release() {
		// Work arrived meanwhile: hand the running status on.
		m.kick()
	}
}

// Close stops the mailbox from accepting messages: later posts fail with
// ErrMailboxClosed, and Post calls blocked on a full queue return
// ErrMailboxClosed. Messages already queued are still handled, after which
// Done is closed. Close is idempotent and may be called from the handler.
func (m *Mailbox[M]) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.syncLocked()
	close(m.closedCh)
	m.mu.Unlock()
	// Make sure a turn runs to close done, even if nothing is queued.
	m.schedule()
}

// Done returns a channel that is closed once Close has been called and every
// message queued before it has been handled.
func (m *Mailbox[M]) Done() <-chan struct{} {
	return m.done
}

// Len reports how many messages are waiting. A message being handled is no
// longer counted.
func (m *Mailbox[M]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.user.len()
}

// Cap reports the bound of the queue (WithCapacity).
func (m *Mailbox[M]) Cap() int {
	return m.cfg.capacity
}

// syncLocked updates the lock-free mirrors of the queue's state (work,
// isClosed) after a change. Callers hold m.mu.
func (m *Mailbox[M]) syncLocked() {
	w := int32(m.user.len())
	if m.closed && !m.doneClosed {
		w++
	}
	m.work.Store(w)
	m.isClosed.Store(m.closed)
}

// passSpaceLocked hands the wake-up token to the next blocked Post when the
// queue has room and someone is waiting. The token channel has capacity 1,
// so sending never blocks; a token already there suffices, because every
// waiter that takes one passes it on while room remains. Callers hold m.mu.
func (m *Mailbox[M]) passSpaceLocked() {
	if m.waiters > 0 && !m.user.full() {
		select {
		case m.space <- struct{}{}:
		default:
		}
	}
}

// schedule starts a turn unless one is already scheduled or running. The
// poster that flips the status from idle to running owns the turn: it hands
// it to the dedicated drainer (waking it, or starting it if it has left), or
// to the Dispatcher.
func (m *Mailbox[M]) schedule() {
	if m.status.Load() == idle && m.status.CompareAndSwap(idle, running) {
		m.kick()
	}
}

// kick hands the running status, which the caller holds, to a drainer.
func (m *Mailbox[M]) kick() {
	if m.wake == nil {
		m.cfg.dispatcher.Schedule(m.turnFn)
		return
	}
	if m.alive {
		m.wake <- struct{}{} // never blocks: one token per hand-over, taken before the next
		return
	}
	m.alive = true
	go m.drainer()
}

// drainerLinger is how long the dedicated drainer stays parked with nothing
// to do before its goroutine leaves (between one and two times this long); the next post starts a new one. It
// bounds what an idle mailbox that is never closed keeps (one parked
// goroutine), while a mailbox in use, even lightly, never starts one per
// message.
const drainerLinger = 250 * time.Millisecond

// drainer is the dedicated drainer's goroutine. It is started holding the
// running status, handles messages until the queue is empty, then parks
// until a poster hands the running status back (through wake), the mailbox
// is done, or it has lingered long enough. Unlike a turn on a Dispatcher it
// does not yield after the throughput budget: it is the mailbox's own
// goroutine, and Go's scheduler preempts it like any other.
func (m *Mailbox[M]) drainer() {
	// The linger timer is armed once and re-armed only when it fires after
	// a period with work: a timer operation per park would cost more than
	// the wake-up itself.
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	woken := false // a poster woke the drainer since the timer was armed
	for {
		// Drain while holding the running status.
		for {
			msg, ok := m.next()
			if ok {
				m.invoke(msg)
				continue
			}
			if m.release() {
				continue
			}
			break
		}
		select {
		case <-m.done:
			return // closed and drained: nothing can be posted any more
		default:
		}
		if linger == nil {
			linger = time.NewTimer(m.linger)
		}
	park:
		select {
		case <-m.wake:
			woken = true
			continue
		case <-linger.C:
		}
		if woken {
			woken = false
			linger.Reset(m.linger)
			goto park
		}
		// Idle for a whole period: leave, unless a poster claimed the
		// running status meanwhile (then its token is on its way) or work
		// arrived.
		if !m.status.CompareAndSwap(idle, running) {
			<-m.wake
			linger.Reset(m.linger)
			continue
		}
		m.alive = false
		if m.release() {
			m.alive = true
			linger.Reset(m.linger)
			continue
		}
		return
	}
}

// turn is the drainer. It runs only while status is running and it is the
// only code that calls handle, so handles never overlap.
func (m *Mailbox[M]) turn() {
	for n := 0; ; {
		msg, ok := m.next()
		if !ok {
			// The queue was empty. Go idle and look again: a post that
			// landed after next's check saw status running, so it did not
			// schedule a turn, and would be stranded if nobody looked.
			if m.release() {
				continue // re-acquired; keep draining in this turn
			}
			return
		}
		m.invoke(msg)
		if n++; n < m.cfg.throughput {
			continue
		}
		// Budget spent: yield so other actors get the goroutines.
		if m.pending() || m.release() {
			m.cfg.dispatcher.Schedule(m.turnFn)
		}
		return
	}
}

// next pops the next message. When the queue is empty
// and the mailbox is closed, it closes done: every queued message has been
// handled, since next is only called between handles.
func (m *Mailbox[M]) next() (msg M, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.user.len() > 0 {
		msg = m.user.pop()
		m.syncLocked()
		m.passSpaceLocked()
		return msg, true
	}
	if m.closed && !m.doneClosed {
		m.doneClosed = true
		m.syncLocked()
		close(m.done)
	}
	return msg, false
}

// pending reports whether a turn has work: a queued message, or a Close whose
// done channel is not closed yet.
func (m *Mailbox[M]) pending() bool {
	return m.work.Load() > 0
}

// release marks the drainer idle, then re-checks the queue. If work arrived
// in between and no poster has claimed the drainer yet, it re-acquires it and
// reports true; the caller then owns the drainer again.
func (m *Mailbox[M]) release() bool {
	if m.hookBeforeIdle != nil {
		m.hookBeforeIdle()
	}
	m.status.Store(idle)
	return m.pending() && m.status.CompareAndSwap(idle, running)
}

// invoke calls the handler, recovering a panic unless the mailbox was built
// WithCrashOnPanic.
func (m *Mailbox[M]) invoke(msg M) {
	if m.cfg.crashOnPanic {
		m.handle(msg)
		return
	}
	defer func() {
		if r := recover(); r != nil {
			m.cfg.onPanic(r, debug.Stack())
		}
	}()
	m.handle(msg)
}
