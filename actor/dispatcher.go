package actor

// Dispatcher decides where a mailbox's turns run. A turn is the drainer: it
// handles up to the mailbox's throughput of messages, one at a time, then
// returns, rescheduling itself through the same Dispatcher if messages remain.
//
// The mailbox guarantees that at most one turn per mailbox is scheduled or
// running at any moment, so a Dispatcher never needs to serialise turns
// itself. Schedule must eventually call turn exactly once; it may call it
// inline, on another goroutine, or on a pool.
type Dispatcher interface {
	// Schedule arranges for turn to be called once.
	Schedule(turn func())
}

// DispatcherFunc adapts an ordinary function to the Dispatcher interface.
type DispatcherFunc func(turn func())

// Schedule calls f(turn).
func (f DispatcherFunc) Schedule(turn func()) { f(turn) }

// GoroutineDispatcher runs each turn on a new goroutine (the default was
// this before mailboxes had a dedicated drainer; see WithDispatcher).
// Go reuses exited goroutines, so a turn costs no heap allocation in steady
// state; a mailbox that is kept busy stays on one turn per Throughput
// messages.
type GoroutineDispatcher struct{}

// Schedule starts turn on a new goroutine.
func (GoroutineDispatcher) Schedule(turn func()) { go turn() }

// SyncDispatcher runs each turn inline, on the goroutine that scheduled it.
// With it, a Post to an idle mailbox handles the message (and anything the
// handler posts to its own mailbox) before Post returns, which makes tests
// deterministic. If another goroutine is already draining the mailbox, Post
// only enqueues and that goroutine handles the message.
//
// A turn that exhausts its throughput reschedules itself, which under
// SyncDispatcher is a nested call; the stack grows by one frame per
// Throughput messages handled in one go.
type SyncDispatcher struct{}

// Schedule calls turn and returns when it has finished.
func (SyncDispatcher) Schedule(turn func()) { turn() }
