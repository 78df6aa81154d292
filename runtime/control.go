package runtime

import (
	"context"

	"github.com/herd-go/herd/actor"
)

// The control lane.
//
// Control requests (frames flagged system: the runtime's own Disconnect,
// Listen, CloseListener, StopSignal, Rejected notices, a worker's Adopt)
// are posted to a mailbox of their own, with its own drainer, instead of
// the user lane. They
// are served at once, even while a user handler of the same link end runs
// and never returns: a worker whose messages are stuck in a primary handler
// can still listen and disconnect, and a worker whose handler is stuck still
// serves the primary's Disconnect (its drain hooks run, which may be what
// unblocks that handler).
//
// Control handlers therefore run concurrently with user handlers of the same
// link end, so they only touch state that is safe for that (the port table
// under its lock, the worker's atomics). What must stay ordered with user
// messages goes on the user lane from there: cluster events (eventAfterReply,
// readerError), and the rest of a graceful disconnect, which follows the
// user messages already received (afterReceived).

// controlLaneCap bounds the control lane, as the mailbox's system lane
// bounded control requests before they had a lane of their own.
const controlLaneCap = actor.DefaultSystemCapacity

// handleControl runs on the control lane's drainer. Error events go through
// the user lane (readerError), where they are ordered with the messages
// around them and never run concurrently with the other event handlers.
func (ep *endpoint) handleControl(in inbound) { ep.serve(in, ep.readerError) }

// replyState is what one call of one of the runtime's own handlers leaves
// for its reply: it is per call (carried in the handler's context), since
// the two lanes run handlers concurrently.
type replyState struct {
	after func() // runs once the reply has been queued on the link (or failed)
	fds   []int  // attached to the reply and closed once it is sent (or not)
}

type replyStateKey struct{}

// withReplyState returns ctx carrying a new replyState for one call.
func withReplyState(ctx context.Context) (context.Context, *replyState) {
	rs := &replyState{}
	return context.WithValue(ctx, replyStateKey{}, rs), rs
}

func replyStateFrom(ctx context.Context) *replyState {
	rs, _ := ctx.Value(replyStateKey{}).(*replyState)
	return rs
}

// setAfterReply makes fn run once the reply of the call of ctx is queued on
// the link. Outside an endpoint's call (there is no reply) fn runs at once.
func setAfterReply(ctx context.Context, fn func()) {
	if rs := replyStateFrom(ctx); rs != nil {
		rs.after = fn
		return
	}
	fn()
}

// setReplyFDs attaches fds to the reply of the call of ctx; they are closed
// once it is sent. Outside an endpoint's call they are closed at once.
func setReplyFDs(ctx context.Context, fds []int) {
	if rs := replyStateFrom(ctx); rs != nil {
		rs.fds = fds
		return
	}
	for _, fd := range fds {
		closeFD(fd)
	}
}

// eventAfterReply queues fn on the user lane now, behind the messages
// already received and ahead of any the peer sends once it has the reply,
// and lets it run only once the reply of the call of ctx is queued on the
// link (so that whatever fn sends the peer follows the reply). When the
// user lane has no room, fn runs after the reply on the calling lane.
func (ep *endpoint) eventAfterReply(ctx context.Context, fn func()) {
	sent := make(chan struct{})
	gated := func() {
		select {
		case <-sent:
		case <-ep.closed:
		}
		fn()
	}
	if ep.box.TryPost(inbound{event: gated}) != nil {
		setAfterReply(ctx, fn)
		return
	}
	setAfterReply(ctx, func() { close(sent) })
}
