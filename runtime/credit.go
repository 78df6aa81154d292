package runtime

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// Flow control between the two ends of a link.
//
// Each end's mailbox is bounded in messages (WithMailboxCapacity) and in
// bytes (WithMailboxBytes): together they are the end's window. User
// messages (every request without wire.FlagSystem) are credited: the
// sender's link sends one only within the credit the receiver has granted
// (link.WithCredit); the receiver grants its window when the link starts
// and gives credit back, in batches, as its handlers finish. So the
// receiver's reader never waits for room in the mailbox: it always reads,
// and the replies to this end's own calls, connection hand-offs, disconnect
// requests and credit itself (control traffic, never credited) are never
// stuck behind user messages, in either direction. The sender is what
// waits: a request/response call until its deadline, a fire-and-forget send
// until its context ends; nothing is dropped. A peer that sends beyond its
// credit breaks the protocol and loses its link (errCreditExceeded).
//
// Why credits on the one socket rather than a second socket for control:
// user messages and a worker's events stay in one ordered stream (fork,
// online, everything it sent, disconnect, exit), with no cross-socket
// ordering to restore, and the receiver's memory is bounded by what it
// granted rather than by how fast it reads. Bytes are counted as whole
// frames (wire.Envelope.Len), the same on both ends; the decoded form of a
// message is about the size of its encoding for the usual shapes (bytes and
// strings), larger for messages made of many tiny sub-messages.
//
// Control requests that a handler serves (Disconnect, Listen,
// CloseListener) are not credited either: they go to the control lane
// (control.go), whose own goroutine serves them even while a user handler
// runs.

// DefaultMailboxBytes is how many bytes of user messages a link end holds
// (received and not yet handled) unless WithMailboxBytes says otherwise.
const DefaultMailboxBytes = 64 << 20

// eventReserve is room in the user lane beyond the credited window, for
// the end's own events (fork, online, errors, disconnect, exit) and the
// end of a graceful disconnect.
const eventReserve = 64

// maxSystemFrame bounds a control request (wire.FlagSystem, not a reply):
// control messages are small, and they are not credited, so the system
// lane's memory stays bounded by its capacity times this.
const maxSystemFrame = 64 << 10

// errCreditExceeded is the cause of a link whose peer sent a user message
// beyond the credit it was granted, or a control request larger than
// maxSystemFrame: both are protocol violations.
var errCreditExceeded = errors.New("herd: peer exceeded its flow-control credit")

// inboxCredit is the receiving side of a link's flow control: what the end
// granted its peer, received and handled. The reader writes recv* (and
// owns newFrames, newBytes), the drainer rel*; grants happen under mu.
//
// The reader counts what it admits in newFrames and newBytes, plain
// fields, and adds them to recvFrames and recvBytes once per read
// (publish, from the endpoint's readIdle): two locked additions per read
// rather than per message. admit checks the window against both, so the
// bound is exact. recv* are read by others only to tell whether
// everything received has been handled while the peer waits for credit
// (peerWaiting), so while it waits the reader adds at once: the peer's
// Waiting frame is handled on the reader (peerWaits) after publishing, and
// only the reader sets peerWaiting, so while it is set nothing admitted is
// left unpublished.
type inboxCredit struct {
	windowFrames, windowBytes int64

	// The reader's and the drainer's counters on their own cache lines:
	// each is written for every message, or every read.
	_                     [64]byte
	recvFrames, recvBytes atomic.Int64 // credited frames read, published
	newFrames, newBytes   int64        // the reader's: admitted, not yet in recv*
	_                     [32]byte
	relFrames, relBytes   atomic.Int64 // credited frames handled
	_                     [48]byte

	grantedFrames, grantedBytes atomic.Int64 // granted in total, window included

	peerWaiting atomic.Bool // the peer waits for credit, until all is given back
	stopped     atomic.Bool // a disconnect started: grant nothing more

	mu   sync.Mutex
	msg  herdv1.CreditRequest        // the grant being sent, under mu (encoded before send returns)
	send func(*herdv1.CreditRequest) // writes a Credit frame
}

func (c *inboxCredit) init(frames, bytes int64, send func(*herdv1.CreditRequest)) {
	c.windowFrames, c.windowBytes, c.send = frames, bytes, send
}

// grantWindow grants the whole window; it is the first frame of the link.
func (c *inboxCredit) grantWindow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.grantedFrames.Store(c.windowFrames)
	c.grantedBytes.Store(c.windowBytes)
	c.msg.Frames, c.msg.Bytes = uint32(c.windowFrames), uint64(c.windowBytes)
	c.send(&c.msg)
}

// admit counts a credited frame of n bytes as it is read, or fails if the
// peer had no credit for it. The check mirrors the sender's (see
// link.WithCredit): the receiver has granted at least what the sender had
// seen, so an honest sender always passes. It runs on the reader.
func (c *inboxCredit) admit(n int) error {
	frames := c.grantedFrames.Load() - c.recvFrames.Load() - c.newFrames
	bytes := c.grantedBytes.Load() - c.recvBytes.Load() - c.newBytes
	if frames < 1 || (int64(n) > bytes && bytes < c.windowBytes) {
		return creditExceeded(n, frames, bytes)
	}
	c.newFrames++
	c.newBytes += int64(n)
	if c.peerWaiting.Load() {
		c.publish()
	}
	return nil
}

// publish adds what the reader admitted since the last publish to
// recvFrames and recvBytes. It runs on the reader, once per read
// (readIdle), and at once while the peer waits for credit.
func (c *inboxCredit) publish() {
	if c.newFrames == 0 {
		return
	}
	// Bytes first, as releaseN: whoever sees the frames sees their bytes.
	c.recvBytes.Add(c.newBytes)
	c.recvFrames.Add(c.newFrames)
	c.newFrames, c.newBytes = 0, 0
}

// creditExceeded is admit's error, built out of line: admit runs for every
// message.
//
//go:noinline
func creditExceeded(n int, frames, bytes int64) error {
	return &wire.ProtocolError{Cause: fmt.Errorf("%w: a %d-byte message with credit for %d messages and %d bytes", errCreditExceeded, n, frames, bytes)}
}

// release gives back the credit of a handled frame of n bytes: at once
// when a quarter of the window (in messages or bytes) is waiting to be
// given back, or when the mailbox is empty and the peer waits.
func (c *inboxCredit) release(n int) { c.releaseN(1, int64(n)) }

// releaseN gives back the credit of frames handled frames of bytes bytes
// in all, as release does for each.
func (c *inboxCredit) releaseN(frames, bytes int64) {
	// Bytes first: a grant that sees the frame handled sees its bytes.
	rb := c.relBytes.Add(bytes)
	rf := c.relFrames.Add(frames)
	if c.stopped.Load() {
		return
	}
	pf := rf - (c.grantedFrames.Load() - c.windowFrames)
	pb := rb - (c.grantedBytes.Load() - c.windowBytes)
	if pf >= max(c.windowFrames/4, 1) || pb >= max(c.windowBytes/4, 1) ||
		(c.peerWaiting.Load() && rf == c.recvFrames.Load()) {
		c.grant()
	}
}

// peerWaits records that the peer waits for credit, and grants what is
// held back if nothing is left to handle. The peer says so once per
// waiting sender; it is remembered until everything has been given back
// (the peer then has its whole window, in which any one message fits). It
// runs on the reader: what it admitted is published first, and under mu,
// so that a grant under way (which clears peerWaiting when it has given
// everything back) is ordered with it.
func (c *inboxCredit) peerWaits() {
	c.publish()
	c.mu.Lock()
	c.peerWaiting.Store(true)
	all := c.relFrames.Load() == c.recvFrames.Load()
	c.mu.Unlock()
	if all {
		c.grant()
	}
}

// grant gives back everything handled and not yet given back.
func (c *inboxCredit) grant() {
	c.mu.Lock()
	if c.stopped.Load() {
		c.mu.Unlock()
		return
	}
	gf, gb := c.grantedFrames.Load(), c.grantedBytes.Load()
	rf := c.relFrames.Load()
	pf := rf - (gf - c.windowFrames)
	pb := c.relBytes.Load() - (gb - c.windowBytes)
	if pf <= 0 && pb <= 0 {
		c.mu.Unlock()
		return
	}
	// Count the grant before sending it: a frame the peer sends on the
	// strength of it must find it counted.
	c.grantedFrames.Store(gf + pf)
	c.grantedBytes.Store(gb + pb)
	if rf == c.recvFrames.Load() {
		c.peerWaiting.Store(false) // everything is given back
	}
	c.msg.Frames, c.msg.Bytes = uint32(pf), uint64(pb)
	c.send(&c.msg)
	c.mu.Unlock()
}

// stop grants nothing more: a graceful disconnect handles what was
// received, and the peer's later user messages wait for the link's end
// (their senders then get an error) instead of being read and dropped.
func (c *inboxCredit) stop() { c.stopped.Store(true) }

// sendCredit writes a Credit frame (control: never credited, never
// blocks). It is written on the calling goroutine when the link is idle
// (link.SendNow): a receiver flooded with one-way messages grants credit
// back every quarter window, and waking its writer goroutine for each
// grant cost it a thread wake-up and the writer's trip through the
// scheduler.
func (ep *endpoint) sendCredit(req *herdv1.CreditRequest) {
	h := wire.Header{Procedure: controlServiceCreditProcedure, Flags: wire.FlagSystem}
	if err := ep.link.SendNow(&h, req); err != nil && !errors.Is(err, ErrLinkClosed) {
		ep.log.Debug("herd: credit not sent", "error", err)
	}
}

// waitingCredit is the Credit message saying a sender waits. It is only
// read (encoding it concurrently is safe), so it is shared.
var waitingCredit = &herdv1.CreditRequest{Waiting: true}

// creditWait is the link's WithCredit callback: a sender on this end waits
// for the peer's credit.
func (ep *endpoint) creditWait() {
	ep.sendCredit(waitingCredit)
}

// maxGrant bounds one grant from the peer, so that a hostile one cannot
// overflow this end's counters (which would only hurt its own link).
const maxGrant = 1 << 40

// onCredit handles a Credit frame from the peer, on the reader. One that
// does not decode is reported and ignored, like any undecodable request.
func (ep *endpoint) onCredit(env *wire.Envelope) {
	m := &ep.creditIn
	m.Reset()
	if err := proto.Unmarshal(env.Payload, m); err != nil {
		ep.reportError(CodeInvalidArgument, controlServiceCreditProcedure, fmt.Errorf("decode %s request: %w", controlServiceCreditProcedure, err))
		return
	}
	if f, b := m.GetFrames(), m.GetBytes(); f > 0 || b > 0 {
		ep.link.Grant(int64(f), int64(min(b, maxGrant)))
	}
	if m.GetWaiting() {
		ep.credit.peerWaits()
	}
}

// afterReceived runs fn on the user lane after the user messages already
// received. It is called on a drainer (the control lane's, for a graceful
// disconnect), so it never waits for room: the user lane keeps
// eventReserve slots beyond the credited window, and when even those are
// taken fn runs at once.
func (ep *endpoint) afterReceived(fn func()) {
	if ep.box.TryPost(inbound{event: fn}) != nil {
		fn()
	}
}
