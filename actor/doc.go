// Package actor provides the mailbox that runs each end of a herd link, and
// the supervision primitives the runtime uses to restart workers. It knows
// nothing of processes or sockets and depends only on the standard library.
//
// # Mailboxes and lanes
//
// A [Mailbox] is a bounded queue with two lanes, drained by one handler
// function. The user lane carries the messages a link receives; the system
// lane carries control messages and cluster events. Whenever the drainer takes
// a message it takes one from the system lane if there is any, else one from
// the user lane, so control traffic overtakes a backlog of user messages.
// Within each lane, messages are handled in the order they were posted.
// Messages are stored by value in ring buffers that grow once up to their
// bound and are then reused, so posting a message costs no allocation.
//
// # The drainer
//
// At most one goroutine drains a mailbox at a time, so the handler needs no
// lock for the state it owns. An atomic status flag is idle or running; the
// poster that flips it from idle to running with a compare-and-swap asks the
// mailbox's [Dispatcher] to run a turn. A turn handles messages one at a time,
// up to the throughput budget ([WithThroughput]), and then, if messages
// remain, reschedules itself through the Dispatcher so that many busy actors
// share the goroutines fairly. A turn that finds both lanes empty sets the
// status to idle and then looks at the lanes once more: a message posted
// between its last look and going idle saw the status still running and
// scheduled nothing, so the turn re-acquires the drainer with a
// compare-and-swap and handles it. No message is ever stranded.
//
// By default a mailbox has a dedicated drainer: one goroutine, started by the
// first post, that drains the lanes, parks while they are empty and is woken
// by the poster that flips the status, so that no turn starts a goroutine.
// It leaves when the mailbox is done, or after it has been idle for a while
// (the next post starts it again). [WithDispatcher] runs turns elsewhere
// instead: [GoroutineDispatcher] on a new goroutine each, [SyncDispatcher]
// inline in the poster, which makes tests deterministic.
//
// # Backpressure
//
// Both lanes are bounded ([WithCapacity], [WithSystemCapacity]); nothing is
// dropped silently. [Mailbox.Post] blocks while the user lane is full until a
// slot frees, the context ends (the error matches both [ErrMailboxFull] and
// the context's error) or the mailbox is closed. A link's reader goroutine
// posts with Post, so a slow handler stops the reader, which stops reading the
// socket, which fills the sender's queue. [Mailbox.TryPost] and
// [Mailbox.PostSystem] never block and fail with ErrMailboxFull instead.
//
// [Mailbox.Close] refuses further posts and releases blocked posters with
// [ErrMailboxClosed]; messages already queued are still handled, and then
// [Mailbox.Done] is closed.
//
// # Panics
//
// A handler that panics does not take the mailbox down: the panic is
// recovered, reported with its stack to the panic handler
// ([WithPanicHandler]; by default logged through log/slog at level Error), and
// the drainer goes on with the next message. [WithCrashOnPanic] selects "let
// it crash" instead: the panic is not recovered and, unless the Dispatcher
// recovers it, kills the process, which its supervisor then restarts.
//
// # Supervision
//
// [Backoff] computes restart delays (exponential, jittered, capped) and
// [Restarts] applies it to one child, starting again after a stable uptime.
// [Intensity] limits restarts to at most Max within a sliding Window, like
// Erlang's MaxR/MaxT; a supervisor that exceeds it gives up.
package actor
