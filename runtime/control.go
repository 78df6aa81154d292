package runtime

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// The runtime's own protocol, herd.v1.ControlService, is generated into
// this package with unexported names (control.herd.go, from
// proto/herd/v1/control.proto; see buf.gen.yaml): each end implements
// controlServiceHandler (primary_control.go, worker_control.go), registers
// it with registerControlServiceHandler, and calls the other end through a
// controlServiceClient over controlConn. Nothing of it is public.
//
// Adding a control message takes: the rpc at the end of ControlService in
// proto/herd/v1/control.proto (then go tool -modfile=tools.mod buf
// generate); its lane in controlLanes below (TestControlLanes fails until
// it has one); the method on primaryControl (primary_control.go) or
// workerControl (worker_control.go), whichever end serves it, returning a
// *Response (with files or an after step when it needs them); and the call
// through the other end's client: w.rpc on the primary (to worker w), s.rpc
// in a worker (to the primary).
//
// Lanes.
//
// Every frame a link end reads is handled on one of three lanes, chosen by
// the handler's lane, an option given at registration (onLane; the control
// handlers take theirs from controlLanes):
//
//   - laneUser: the link end's mailbox, drained by one goroutine in arrival
//     order. User messages, cluster events and the control messages that
//     must stay in order with them run here.
//   - laneControl: a second, small mailbox with its own drainer. Its
//     requests are served at once, even while a user handler of the same
//     link end runs and never returns: a worker whose messages are stuck in
//     a primary handler can still listen and disconnect, and a worker whose
//     handler is stuck still serves the primary's Disconnect (its drain
//     hooks run, which may be what unblocks that handler). They overtake
//     the user lane.
//   - laneReader: the link's reader goroutine itself, before the next frame
//     is read: in order with every frame of the link, and without a
//     goroutine switch. Such handlers must not block.
//
// The sender flags a frame for the control or the reader lane as system
// (wire.FlagSystem): it is not counted against the receiver's credit
// (credit.go), and it may only reach a handler of those lanes.
//
// Control handlers run concurrently with user handlers of the same link
// end, so they only touch state that is safe for that (the port table
// under its lock, the worker's atomics). What must stay ordered with user
// messages goes on the user lane from there: cluster events
// (eventAfterReply, reportError), and the rest of a graceful disconnect,
// which follows the user messages already received (afterReceived).

// lane is where a handler runs; see "Lanes" above.
type lane uint8

const (
	laneUser    lane = iota // the mailbox, in order with the peer's messages
	laneControl             // the control mailbox: overtakes the user lane
	laneReader              // the link's reader: in order with every frame, must not block
)

// onLane is the handler option that runs a handler on l. Only the runtime's
// own handlers take it.
func onLane(l lane) HandlerOption {
	return handlerOptionFunc(func(h *Handler) { h.lane = l })
}

// controlLanes is the lane of each procedure of herd.v1.ControlService, for
// both ends: the handler runs there, and the caller (controlConn) flags the
// frame system unless it is laneUser. TestControlLanes checks that every
// method of the service is listed.
var controlLanes = map[string]lane{
	// In order with the worker's messages: the events they cause (online,
	// listening, ready) are ordered with the messages around them.
	controlServiceHelloProcedure:     laneUser,
	controlServiceListeningProcedure: laneUser,
	controlServiceReadyProcedure:     laneUser,
	// A pool's watchdog: its answer proves the worker's user lane moves.
	controlServiceHeartbeatProcedure: laneUser,
	// Ahead of user traffic: served even while a user handler is stuck.
	controlServiceDisconnectProcedure:    laneControl,
	controlServiceListenProcedure:        laneControl,
	controlServiceCloseListenerProcedure: laneControl,
	controlServiceStopSignalProcedure:    laneControl,
	controlServiceRejectedProcedure:      laneControl,
	controlServiceAdoptProcedure:         laneControl,
	controlServiceRecycleProcedure:       laneControl,
	// On the reader: the round-robin hand-off's round trip costs no
	// goroutine switch, and credit comes back while both lanes are busy.
	controlServiceHandoffProcedure:  laneReader,
	controlServiceAcceptedProcedure: laneReader,
	controlServiceCreditProcedure:   laneReader,
}

// withControlLanes is the registration option of the control handlers: each
// runs on its procedure's lane in controlLanes.
func withControlLanes() HandlerOption {
	return handlerOptionFunc(func(h *Handler) { h.lane = controlLanes[h.procedure] })
}

// controlConn is the ClientConn of the runtime's own calls to the other end
// of ep: each procedure travels on its lane (controlLanes). Control calls
// run no interceptors and carry no metadata.
type controlConn struct{ ep *endpoint }

// newControlClient returns the client of the other end's control handlers.
func newControlClient(ep *endpoint) controlServiceClient {
	return newControlServiceClient(controlConn{ep})
}

func (c controlConn) Call(ctx context.Context, procedure string, req, res proto.Message, opts ...CallOption) error {
	return c.ep.roundTrip(ctx, procedure, req, res, controlCallConfig(procedure, opts), nil)
}

func (c controlConn) Send(ctx context.Context, procedure string, req proto.Message, opts ...CallOption) error {
	return c.ep.sendCfg(ctx, procedure, req, controlCallConfig(procedure, opts), nil)
}

// controlCallConfig is the configuration of a control call: opts, and the
// system flag of its lane.
func controlCallConfig(procedure string, opts []CallOption) *callConfig {
	cfg := newCallConfig(opts)
	if controlLanes[procedure] != laneUser {
		if cfg == nil {
			cfg = new(callConfig)
		}
		cfg.system = true
	}
	return cfg
}

// controlLaneCap bounds the control lane.
const controlLaneCap = 256

// handleControl runs on the control lane's drainer. Error events go through
// the user lane (reportError), where they are ordered with the messages
// around them and never run concurrently with the other event handlers.
func (ep *endpoint) handleControl(in inbound) { ep.serve(&in, ep.reportError) }

// eventAfterReply queues fn on the user lane now, behind the messages
// already received and ahead of any the peer sends once it has the reply,
// and returns the step that lets it run: pass it to the reply's
// Response.AfterReply, so that whatever fn sends the peer follows the
// reply. When the user lane has no room, the step runs fn itself.
func (ep *endpoint) eventAfterReply(fn func()) (after func()) {
	sent := make(chan struct{})
	gated := func() {
		select {
		case <-sent:
		case <-ep.closed:
		}
		fn()
	}
	if ep.box.TryPost(inbound{event: gated}) != nil {
		return fn
	}
	return func() { close(sent) }
}
