package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/actor"
	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/link"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// An endpoint is one end of a link as an actor: the link's reader decodes
// requests and posts them to a bounded mailbox; one drainer runs their
// handlers one at a time, in arrival order, and writes the replies.
// Control requests (a Disconnect, a Listen, ...) go to a second, small
// mailbox with its own drainer, so that they never wait for a user handler
// that is running, and a few run on the reader itself (control.go,
// "Lanes"). Responses to this end's own calls bypass both and complete the
// waiting caller directly, so a handler may call the other side and wait.
//
// The primary has one endpoint per worker; a worker has one, to the primary.
type endpoint struct {
	link *link.Link
	box  *actor.Mailbox[inbound] // the user lane: user messages and events, in order
	ctl  *actor.Mailbox[inbound] // the control lane (control.go)
	log  *slog.Logger

	// Handlers are looked up in control (the runtime's own ControlService),
	// then in local (this end's user handlers), then in shared (the
	// primary's handlers for every worker; nil on the worker side).
	control *Mux
	local   *Mux
	shared  *Mux

	// baseCtx is the parent of every handler context; it carries the
	// identity of the peer (the Worker, on the primary).
	baseCtx context.Context

	// peer is the other end, for interceptors; interceptors are the
	// link-wide ones (interceptor.go), and chains caches, for the drainer,
	// each user handler wrapped in them.
	peer         Peer
	interceptors []Interceptor
	chains       map[*Handler]UnaryFunc

	// errorEvent delivers an error event about this link at once (the
	// Worker's or the Self's errorEvent). It is called on the user lane's
	// drainer; from anywhere else use reportError, which orders it there.
	errorEvent func(code Code, procedure string, err error)

	nextID   atomic.Uint64
	pendMu   sync.Mutex
	pending  map[uint64]*pendingCall
	inflight inflight // the calls from the peer being served (callctx.go)

	// waker is the eventfd one waiting caller at a time parks on
	// (callwake.go), made by the first call; wakerMade says it was tried
	// (or the link has ended: no more). Both under pendMu.
	waker     *callWaker
	wakerMade bool
	callSpin  time.Duration // how long the waker's holder reads for its reply (callspin.go)

	cache   lookupCache           // the reader's
	arenas  map[*Handler]reqArena // the reader's: user requests, in blocks (reqarena.go)
	batch   []inbound             // the reader's: user messages of this read, to post (batch.go)
	rejects rejectBudget          // the drainers' (rejected.go)

	// credit is the receiving side of flow control (credit.go);
	// creditIn is the reader's decoded Credit frame, reused.
	credit   inboxCredit
	creditIn herdv1.CreditRequest

	// drop, once set, makes the drainer release messages instead of
	// handling them (a dead worker's, after its exit event was delivered
	// without waiting for a stuck handler).
	drop atomic.Bool

	maxFrame  int
	maxFDs    int           // bound of queuedFDs (WithMaxQueuedFiles)
	started   atomic.Bool   // set once link is set, just before ready closes
	queuedFDs atomic.Int64  // received files in the mailbox, not yet handed to a handler
	ready     chan struct{} // closed once link is set: the reader waits for it
	closed    chan struct{} // closed when the link is done
	closeOnce sync.Once

	// Inline handling on the reader (inline.go).
	rwatch     readerWatch
	held       bool       // the reader's: it holds the user lane's claim between frames
	rtoken     uint64     // the reader's: link.Release's token for the inline handler
	heldCredit heldCredit // the reader's: credit of inline messages not given back yet
}

// inbound is one message in an endpoint's mailbox: a decoded request to run,
// a request to reject, or a local event. It is copied into and out of the
// mailbox's ring, so what a plain message does not need (files, metadata,
// a refusal) is behind x: a one-way message is 80 bytes, not 136.
type inbound struct {
	h      *Handler
	req    proto.Message
	ctx    *callCtx // set for request/response calls, ended by endCall; nil means baseCtx
	callID uint64
	event  func()        // a local event to run in order
	x      *inboundExtra // nil unless the message has files, metadata or a refusal
	credit uint32        // frame size of a credited message, 0 if not credited
	user   bool          // h is a user handler (not the runtime's own)
}

// inboundExtra is the rarely used part of an inbound.
type inboundExtra struct {
	files  []*os.File
	md     Metadata // the caller's metadata, nil when none
	reject *Error   // set when the request is answered with an error
	proc   string   // procedure, for rejects

	// borrowed is the link's buffer the request shares, given back once
	// the handler has returned and its reply is written (borrow.go).
	borrowed []byte
}

// extra returns in.x, allocated on first use.
func (in *inbound) extra() *inboundExtra {
	if in.x == nil {
		in.x = new(inboundExtra)
	}
	return in.x
}

// files returns the descriptors received with the message.
func (in *inbound) files() []*os.File {
	if in.x == nil {
		return nil
	}
	return in.x.files
}

// refuse turns in into a refusal of procedure proc with err, dropping the
// handler and the request.
func (in *inbound) refuse(proc string, err *Error) {
	x := in.extra()
	x.proc, x.reject = proc, err
	in.h, in.req = nil, nil
}

type endpointConfig struct {
	maxFrame     int
	mailboxCap   int
	maxQueuedFDs int
	mailboxBytes int
	logger       *slog.Logger
	crashOnPanic bool
	interceptors []Interceptor // link-wide (WithInterceptors on NewPrimary, NewSelf)
	// callSpin is WithCallSpin's, when callSpinSet; else callSpin's
	// default (callspin.go).
	callSpin    time.Duration
	callSpinSet bool
}

// newEndpoint makes an endpoint whose mailbox is ready but whose link is not
// yet started, so that events can be queued ahead of the first message.
func newEndpoint(cfg endpointConfig, control, local, shared *Mux, baseCtx context.Context, errorEvent func(Code, string, error)) *endpoint {
	ep := &endpoint{
		log:          cfg.logger,
		control:      control,
		local:        local,
		shared:       shared,
		baseCtx:      baseCtx,
		errorEvent:   errorEvent,
		pending:      make(map[uint64]*pendingCall),
		interceptors: cfg.interceptors,
		callSpin:     callSpin,
		ready:        make(chan struct{}),
		closed:       make(chan struct{}),
	}
	if cfg.callSpinSet {
		ep.callSpin = cfg.callSpin
	}
	// The user lane holds the credited window plus room for local events.
	opts := []actor.Option{actor.WithCapacity(cfg.mailboxCap + eventReserve)}
	if cfg.crashOnPanic {
		opts = append(opts, actor.WithCrashOnPanic())
	} else {
		opts = append(opts, actor.WithPanicHandler(func(v any, stack []byte) {
			ep.log.Error("herd: panic in mailbox", "panic", v, "stack", string(stack))
		}))
	}
	ep.box = actor.NewMailbox(ep.handle, opts...)
	ep.ctl = actor.NewMailbox(ep.handleControl, append(opts, actor.WithCapacity(controlLaneCap))...)
	ep.maxFrame = cfg.maxFrame
	ep.maxFDs = cfg.maxQueuedFDs
	ep.credit.init(int64(cfg.mailboxCap), int64(cfg.mailboxBytes), ep.sendCredit)
	return ep
}

// start runs the link over f, which it takes over, with the link options
// opts added to the endpoint's own.
func (ep *endpoint) start(f *os.File, opts ...link.Option) error {
	l, err := link.New(f, ep.onFrame, append([]link.Option{link.WithMaxFrameSize(ep.maxFrame), link.WithCredit(ep.creditWait), link.WithReadIdle(ep.readIdle)}, opts...)...)
	if err != nil {
		return err
	}
	ep.link = l
	ep.rwatch.init(l)
	ep.credit.grantWindow() // the link's first frame
	ep.started.Store(true)
	close(ep.ready)
	go ep.watch()
	return nil
}

// linkFailure returns why the link ended when that was a fault (a protocol
// error, an oversize frame, an I/O error) rather than a close by either
// side, with the code to report it under.
func (ep *endpoint) linkFailure() (Code, error) {
	err := ep.link.Err()
	switch {
	case err == nil, errors.Is(err, ErrLinkClosed):
		return 0, nil
	case errors.Is(err, ErrFrameTooLarge):
		return CodeResourceExhausted, err
	default:
		var pe *ProtocolError
		if errors.As(err, &pe) {
			return CodeInvalidArgument, err
		}
		return CodeUnavailable, err
	}
}

// watch fails every waiting call once the link is done.
func (ep *endpoint) watch() {
	<-ep.link.Done()
	ep.rwatch.stop()
	// The waker goes before closed is closed, so that a closed endpoint
	// has none (and makes none: wakerMade); the pending calls are taken
	// after, so that a call registered before closed was seen is failed.
	ep.pendMu.Lock()
	waker := ep.waker
	ep.waker, ep.wakerMade = nil, true
	ep.pendMu.Unlock()
	ep.closeOnce.Do(func() { close(ep.closed) })
	ep.pendMu.Lock()
	pend := ep.pending
	ep.pending = make(map[uint64]*pendingCall)
	ep.pendMu.Unlock()
	for _, pc := range pend {
		pc.finish(NewError(CodeUnavailable, ep.linkErr()))
	}
	if waker != nil {
		waker.close() // after the calls' tokens: a caller parked on it falls back to them
	}
	ep.inflight.cancelAll()
}

// linkErr is why the link ended, for callers.
func (ep *endpoint) linkErr() error {
	if err := ep.link.Err(); err != nil {
		return err
	}
	return ErrLinkClosed
}

// onFrame runs on the link's reader goroutine for every frame.
func (ep *endpoint) onFrame(env *wire.Envelope, files []*os.File) error {
	if !ep.started.Load() {
		<-ep.ready // the reader starts before link.New returns
	}
	if !env.KnownProcedure && len(env.Procedure) > 0 {
		// Another procedure than the last: the cache no longer holds
		// the last one (lookup).
		ep.cache.last = false
	}
	credited := env.Flags&wire.FlagSystem == 0 && env.ReplyTo == 0 && env.Flags&wire.FlagCancel == 0
	if !credited && len(ep.batch) > 0 {
		// Whatever is not a user message is ordered after the user
		// messages read before it (batch.go).
		ep.flushBatch()
	}
	switch {
	case env.Flags&wire.FlagCancel != 0:
		closeFiles(files)
		ep.inflight.cancel(env.ReplyTo)
		return nil
	case env.ReplyTo != 0:
		ep.complete(env, files)
		return nil
	}
	if !credited {
		switch {
		case string(env.Procedure) == controlServiceCreditProcedure:
			// Flow control itself, below the handlers (credit.go).
			closeFiles(files)
			ep.onCredit(env)
			return nil
		case env.Len > maxSystemFrame:
			closeFiles(files)
			return &wire.ProtocolError{Cause: fmt.Errorf("%w: a %d-byte control message, at most %d", errCreditExceeded, env.Len, maxSystemFrame)}
		}
	} else if err := ep.credit.admit(env.Len); err != nil {
		closeFiles(files)
		return err
	}
	h, control := ep.lookup(env)
	in := inbound{h: h, callID: env.CallID, user: !control}
	if len(files) > 0 {
		// The link reuses its slice after this call; the files are ours.
		in.extra().files = append([]*os.File(nil), files...)
	}
	if credited {
		in.credit = uint32(env.Len)
	}
	switch {
	case h == nil:
		proc := string(env.Procedure)
		in.refuse(proc, Errorf(CodeUnimplemented, "procedure %s is not registered", proc))
	case !credited && h.lane == laneUser:
		// Only the runtime's own procedures of the control and reader
		// lanes travel uncredited.
		proc := string(env.Procedure)
		in.refuse(proc, Errorf(CodeInvalidArgument, "procedure %s is not a control procedure", proc))
	default:
		if control {
			in.req = h.newReq()
		} else {
			in.req = ep.arena(h).next()
		}
		// Decode into the new, zero message: flat requests by the
		// runtime itself (fastdecode.go), others by a merge, which is
		// proto.Unmarshal less its Reset (unmarshal.go).
		if h.borrow && env.Owned != nil {
			ep.decodeBorrowed(&in, h, env)
		} else if err := h.decodeRequest(env.Payload, in.req); err != nil {
			in.refuse(h.procedure, NewError(CodeInvalidArgument, fmt.Errorf("decode %s request: %w", h.procedure, err)))
		}
	}
	if in.h != nil && h.lane == laneReader && env.CallID == 0 {
		ep.serveOnReader(&in, env)
		return nil
	}
	if n := int64(len(in.files())); n > 0 {
		if ep.queuedFDs.Add(n) > int64(ep.maxFDs) {
			// Refused at once: the files are not held while the
			// refusal waits in the mailbox.
			ep.queuedFDs.Add(-n)
			closeFiles(in.x.files)
			in.x.files = nil
			if in.h != nil {
				in.refuse(string(env.Procedure), Errorf(CodeResourceExhausted, "%d more files would take this link past its %d queued files (WithMaxQueuedFiles)", n, ep.maxFDs))
			}
		}
	}
	if in.h != nil && env.FDsLost > 0 {
		// This process could not install them all (see link's
		// "Descriptors"): refuse the message rather than run it without.
		in.refuse(string(env.Procedure), NewError(CodeResourceExhausted, lostFDs(env)))
	}
	if in.h != nil && env.MetadataCount > 0 {
		md, reject := decodeMetadata(env)
		if reject != nil {
			in.refuse(h.procedure, reject)
		} else {
			in.extra().md = md
		}
	}
	if in.h != nil && env.CallID != 0 {
		in.ctx = newCallCtx(ep.baseCtx, env.CallID, env.DeadlineUnixNano)
		ep.inflight.add(in.ctx)
	}
	switch {
	case in.h != nil && in.h.lane == laneControl, !credited:
		// A control request, or the refusal of an uncredited frame: the
		// control lane serves or reports it.
		if len(ep.batch) > 0 {
			ep.flushBatch()
		}
		if err := ep.ctl.TryPost(in); err != nil {
			ep.postFailed(&in, string(env.Procedure), err)
		}
	case len(ep.batch) == 0 && !ep.link.CallerReading() && ep.tryInline(&in):
		// (Not on a caller reading for its reply: a handler there would
		// hold up the caller, and could not hand the reading on.)
	default:
		// The user lane is busy: the message joins the read's batch,
		// posted at the end of the read (batch.go).
		ep.batch = append(ep.batch, in)
		if len(ep.batch) >= maxBatch {
			ep.flushBatch()
		}
	}
	return nil
}

// postFailed handles a message the mailbox refused with err: it is
// released, reported, and a call is answered with the error.
func (ep *endpoint) postFailed(in *inbound, proc string, err error) {
	ep.release(in)
	err = fmt.Errorf("mailbox: %w", err)
	ep.reportError(CodeResourceExhausted, proc, err)
	if in.callID != 0 && !errors.Is(err, actor.ErrMailboxClosed) {
		ep.reply(in.callID, nil, NewError(CodeResourceExhausted, err))
	}
}

// arena returns the reader's request arena of user handler h.
func (ep *endpoint) arena(h *Handler) reqArena {
	c := &ep.cache
	if c.h == h && c.arena != nil {
		return c.arena
	}
	a := ep.arenas[h]
	if a == nil {
		if ep.arenas == nil {
			ep.arenas = make(map[*Handler]reqArena)
		}
		a = h.newArena()
		ep.arenas[h] = a
	}
	if c.h == h {
		c.arena = a
	}
	return a
}

// serveOnReader runs a decoded request of a laneReader handler on the
// link's reader. Descriptors the process could not install (see link's
// "Descriptors") are not a refusal there: they reach the handler as nil
// files at the end of its files, so that it can give them back in order.
// Only fire-and-forget messages run here, since a reply could block the
// reader: a call of such a procedure (a peer's mistake) is served on the
// control lane instead.
func (ep *endpoint) serveOnReader(in *inbound, env *wire.Envelope) {
	files := in.files()
	if env.FDsLost > 0 {
		files = append(files, make([]*os.File, env.FDsLost)...)
	}
	ctx := ep.baseCtx
	var box *callFilesBox
	if len(files) > 0 {
		ctx, box = withFiles(ctx, files)
	}
	var slot *replySlot
	if in.h.extras {
		ctx, slot = withReplySlot(ctx)
	}
	res, err := in.h.run(ctx, in.req, nil, ep.peer, in.callID == 0)
	if box != nil {
		box.release()
	}
	var x replyExtras
	if slot != nil {
		x = slot.extras
	}
	_ = res // fire-and-forget: no reply
	if err != nil {
		ep.reportError(CodeOf(err), in.h.procedure, err)
	}
	x.release()
	if in.credit > 0 {
		ep.credit.release(int(in.credit))
	}
	ep.giveBack(in)
}

// reportError reports an error event about this link from any goroutine
// (the reader, the control lane, a listener): through the user lane when it
// has room, so that it is ordered with the messages around it, else at
// once. On the user lane's drainer, errorEvent reports at once.
func (ep *endpoint) reportError(code Code, procedure string, err error) {
	if ep.box.TryPost(inbound{event: func() { ep.errorEvent(code, procedure, err) }}) != nil {
		ep.errorEvent(code, procedure, err)
	}
}

// lifeCtx is a context that ends with the link, for blocking posts.
func (ep *endpoint) lifeCtx() context.Context { return closedCtx{ep.closed} }

// lookupCache remembers the last procedure the reader looked up: a
// stream of messages to one procedure then costs one comparison instead of
// a lookup in each of three muxes, and none when the link says the frame's
// procedure is the last one it handed over (wire.Envelope.KnownProcedure)
// and that was the cached one (last). Only the reader uses it.
type lookupCache struct {
	procedure  []byte
	h          *Handler
	control    bool
	last       bool // procedure is that of the last frame with one (see onFrame)
	generation uint64
	arena      reqArena // h's in endpoint.arenas, once asked for
}

// lookup finds the handler of env's procedure, and whether it is one of
// the runtime's own. It runs on the reader.
func (ep *endpoint) lookup(env *wire.Envelope) (*Handler, bool) {
	c := &ep.cache
	gen := muxGeneration.Load()
	if c.h != nil && c.generation == gen && (env.KnownProcedure && c.last || string(c.procedure) == string(env.Procedure)) {
		c.last = true
		return c.h, c.control
	}
	h, control := ep.lookupMuxes(env.Procedure)
	if h != nil {
		c.procedure = append(c.procedure[:0], env.Procedure...)
		c.h, c.control, c.generation, c.arena, c.last = h, control, gen, nil, true
	}
	return h, control
}

func (ep *endpoint) lookupMuxes(procedure []byte) (*Handler, bool) {
	if h := ep.control.lookup(procedure); h != nil {
		return h, true
	}
	if ep.local != nil {
		if h := ep.local.lookup(procedure); h != nil {
			return h, false
		}
	}
	if ep.shared != nil {
		if h := ep.shared.lookup(procedure); h != nil {
			return h, false
		}
	}
	return nil, false
}

// release frees what an inbound holds when it is not handled.
func (ep *endpoint) release(in *inbound) {
	files := in.files()
	ep.queuedFDs.Add(-int64(len(files)))
	closeFiles(files)
	ep.endCall(in)
	if in.credit > 0 {
		ep.credit.release(int(in.credit))
	}
	ep.giveBack(in)
}

// endCall ends a request/response call's context and forgets it. (A
// method, not a closure made per call: a round trip allocates less.)
func (ep *endpoint) endCall(in *inbound) {
	if in.ctx == nil {
		return
	}
	ep.inflight.remove(in.ctx)
	in.ctx.cancel(context.Canceled)
}

// handle runs on the user lane's drainer.
func (ep *endpoint) handle(in inbound) { ep.serve(&in, ep.errorEvent) }

// serve runs one inbound on its lane's drainer; report is how that lane
// reports an error event.
func (ep *endpoint) serve(in *inbound, report func(Code, string, error)) {
	if in.event != nil {
		in.event()
		return
	}
	if ep.drop.Load() {
		ep.release(in)
		return
	}
	if in.credit > 0 {
		// Deferred: a handler that panics gives its credit back too.
		defer ep.credit.release(int(in.credit))
	}
	ctx := ep.baseCtx
	if in.ctx != nil {
		ctx = in.ctx
	}
	var files *callFilesBox
	if x := in.x; x != nil {
		ep.queuedFDs.Add(-int64(len(x.files))) // out of the mailbox
		if r := x.reject; r != nil {
			closeFiles(x.files)
			report(r.Code(), x.proc, r)
			if in.callID != 0 {
				ep.reply(in.callID, nil, r)
			} else {
				ep.notifyRejected(x.proc, r)
			}
			ep.giveBack(in)
			return
		}
		if len(x.files) > 0 {
			ctx, files = withFiles(ctx, x.files)
		}
		ctx = incomingContext(ctx, x.md)
	}
	var chain UnaryFunc
	if in.user {
		chain = ep.chainFor(in.h)
	}
	var slot *replySlot
	if in.h.extras {
		ctx, slot = withReplySlot(ctx)
	}
	res, err := in.h.run(ctx, in.req, chain, ep.peer, in.callID == 0)
	if files != nil {
		files.release() // closes what the handler did not take
	}
	ep.endCall(in)
	var x replyExtras
	if slot != nil {
		x = slot.extras
	}
	if in.callID != 0 {
		ep.replyWith(in.callID, res, err, x.fds, in.h.borrow)
	} else if err != nil {
		report(CodeOf(err), in.h.procedure, err)
	}
	if slot != nil {
		x.release() // the files are sent; the after step runs
	}
	ep.giveBack(in)
}

// chainFor returns h wrapped in the link's interceptors around its own, nil
// when there are none. It runs on the user lane's drainer, which owns the
// cache (user handlers never run on the control lane: onFrame rejects a
// control-flagged frame to one).
func (ep *endpoint) chainFor(h *Handler) UnaryFunc {
	if len(ep.interceptors) == 0 {
		return h.unary
	}
	if fn, ok := ep.chains[h]; ok {
		return fn
	}
	inner := h.unary
	if inner == nil {
		inner = h.direct
	}
	fn := chainUnary(inner, ep.interceptors)
	if ep.chains == nil {
		ep.chains = make(map[*Handler]UnaryFunc)
	}
	ep.chains[h] = fn
	return fn
}

// reply writes the response to call id.
func (ep *endpoint) reply(id uint64, res proto.Message, err error) {
	ep.replyWith(id, res, err, nil, false)
}

// replyWith writes the response to call id with fds attached (not with an
// error); it returns once they are sent or the send failed. split sends a
// large bytes field from res itself (borrow.go).
func (ep *endpoint) replyWith(id uint64, res proto.Message, err error, fds []int, split bool) {
	var h wire.Header // field by field: see sendCfg
	h.ReplyTo = id
	if err != nil {
		res, fds = nil, nil
		h.ErrorCode = int32(CodeOf(err))
		h.ErrorMessage = errorMessage(err)
	}
	var serr error
	if split {
		serr = ep.sendWaitingSplit(ep.lifeCtx(), &h, res, fds)
	} else {
		serr = ep.sendWaiting(ep.lifeCtx(), &h, res, fds)
	}
	if serr != nil {
		if errors.Is(serr, wire.ErrFrameTooLarge) {
			h = wire.Header{ReplyTo: id, ErrorCode: int32(CodeResourceExhausted), ErrorMessage: serr.Error()}
			serr = ep.link.Send(ep.lifeCtx(), &h, nil, nil)
		}
		if serr != nil && !errors.Is(serr, ErrLinkClosed) {
			ep.log.Debug("herd: reply not sent", "error", serr)
		}
	}
}

// errorMessage is the message of err as a reply carries it.
func errorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message()
	}
	return err.Error()
}

// complete delivers a response frame to its waiting caller.
func (ep *endpoint) complete(env *wire.Envelope, files []*os.File) {
	ep.pendMu.Lock()
	pc := ep.pending[env.ReplyTo]
	delete(ep.pending, env.ReplyTo)
	ep.pendMu.Unlock()
	if pc != nil && env.FDsLost > 0 && !env.HasError {
		closeFiles(files)
		pc.finish(NewError(CodeResourceExhausted, lostFDs(env)))
		return
	}
	if pc != nil && pc.wantFiles && len(files) > 0 && !env.HasError {
		// The link reuses its slice after this call; the files are ours.
		pc.files = append([]*os.File(nil), files...)
	} else {
		closeFiles(files)
	}
	if pc == nil {
		if env.ReplyTo > ep.nextID.Load() {
			ep.reportError(CodeInvalidArgument, "", fmt.Errorf("herd: reply to unknown call %d dropped", env.ReplyTo))
		}
		// Otherwise the caller gave up (its context ended) before the reply came.
		return
	}
	if env.HasError {
		pc.finish(NewError(Code(env.ErrorCode), errors.New(string(env.ErrorMessage))))
		return
	}
	if pc.lease != nil && env.Owned != nil {
		ep.completeBorrowed(pc, env)
		return
	}
	if err := proto.Unmarshal(env.Payload, pc.res); err != nil {
		closeFiles(pc.files)
		pc.files = nil
		pc.finish(NewError(CodeInternal, fmt.Errorf("decode response: %w", err)))
		return
	}
	pc.finish(nil)
}

// runEvent runs fn on the drainer, after everything already posted. It
// blocks while the user lane is full, and runs fn inline when the mailbox is
// closed so that no event is lost.
func (ep *endpoint) runEvent(fn func()) {
	if err := ep.box.Post(context.Background(), inbound{event: fn}); err != nil {
		fn()
	}
}

// closedCtx is a context that ends when done closes; it never allocates a
// timer or a goroutine.
type closedCtx struct{ done chan struct{} }

func (c closedCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c closedCtx) Done() <-chan struct{}       { return c.done }
func (c closedCtx) Value(any) any               { return nil }
func (c closedCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// lostFDs describes a frame some of whose descriptors this process could not
// install (link's Envelope.FDsLost).
func lostFDs(env *wire.Envelope) error {
	return fmt.Errorf("%d of the %d file descriptors sent with the message were lost: this process is at its descriptor limit (RLIMIT_NOFILE)", env.FDsLost, env.FDCount)
}
