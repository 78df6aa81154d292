package actor

import (
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait on an event in these tests, so that a bug
// (a stranded message, a lost wake-up) fails the test instead of hanging it.
const waitTimeout = 10 * time.Second

// queueDispatcher records scheduled turns; the test runs them.
type queueDispatcher struct {
	mu        sync.Mutex
	turns     []func()
	scheduled int
}

func (d *queueDispatcher) Schedule(turn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.turns = append(d.turns, turn)
	d.scheduled++
}

// runOne runs the oldest scheduled turn, reporting false if there was none.
func (d *queueDispatcher) runOne() bool {
	d.mu.Lock()
	if len(d.turns) == 0 {
		d.mu.Unlock()
		return false
	}
	turn := d.turns[0]
	d.turns = d.turns[1:]
	d.mu.Unlock()
	turn()
	return true
}

// runAll runs turns, including those scheduled meanwhile, until none is left.
func (d *queueDispatcher) runAll() {
	for d.runOne() {
	}
}

func (d *queueDispatcher) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.scheduled
}

// chanDispatcher hands each scheduled turn to the test through a channel.
type chanDispatcher chan func()

func (d chanDispatcher) Schedule(turn func()) { d <- turn }

// recorder is a handler that records messages; it is only called by one
// drainer at a time, so it needs a lock only for the test's reads.
type recorder[M any] struct {
	mu  sync.Mutex
	got []M
}

func (r *recorder[M]) handle(m M) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, m)
}

func (r *recorder[M]) messages() []M {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]M(nil), r.got...)
}

func (r *recorder[M]) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// recv waits for a value on ch or fails the test.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// isClosed reports whether ch is closed, without blocking.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (m *Mailbox[M]) waitersForTest() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiters
}
