// Package actor provides the mailbox that runs each end of a herd link, and
// the supervision primitives the runtime uses to restart workers. It knows
// nothing of processes or sockets and depends only on the standard library.
//
// # Mailboxes
//
// A [Mailbox] is a bounded queue drained by one handler function, in the
// order messages were posted. (A link end of herd's runtime has two: its
// user lane, and a small control lane whose messages overtake a backlog of
// user messages because they have a drainer of their own.)
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
// share the goroutines fairly. A turn that finds the queue empty sets the
// status to idle and then looks at the queue once more: a message posted
// between its last look and going idle saw the status still running and
// scheduled nothing, so the turn re-acquires the drainer with a
// compare-and-swap and handles it. No message is ever stranded.
//
// By default a mailbox has a dedicated drainer: one goroutine, started by the
// first post, that drains the queue, parks while it is empty and is woken
// by the poster that flips the status, so that no turn starts a goroutine.
// It leaves when the mailbox is done, or after it has been idle for a while
// (the next post starts it again). [WithDispatcher] runs turns elsewhere
// instead: [GoroutineDispatcher] on a new goroutine each, [SyncDispatcher]
// inline in the poster, which makes tests deterministic.
//
// # Handling on the caller
//
// A goroutine that would post to an idle mailbox and then wait for nothing
// (a link's reader) can run the handler itself: [Mailbox.TryHandle] handles
// one message on the caller if the mailbox is idle and empty, exactly as the
// drainer would, in order. [Mailbox.Claim], [Mailbox.HandleClaimed] and
// [Mailbox.Unclaim] do the same for a run of messages under one claim, each
// handled only if nothing was posted meanwhile (what was posted then goes
// first, through the drainer, once the claim is given back).
// [Mailbox.RunClaimed] is HandleClaimed for a caller that runs its own
// function in place of the handler (a large message passed by pointer).
//
// # Backpressure
//
// A mailbox is bounded ([WithCapacity]); nothing is
// dropped silently. [Mailbox.Post] blocks while it is full until a
// slot frees, the context ends (the error matches both [ErrMailboxFull] and
// the context's error) or the mailbox is closed. A link's reader goroutine
// posts with Post, so a slow handler stops the reader, which stops reading the
// socket, which fills the sender's queue. [Mailbox.TryPost] never blocks
// and fails with ErrMailboxFull instead.
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
