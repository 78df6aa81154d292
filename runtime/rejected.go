package runtime

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// A fire-and-forget message that the receiving side cannot dispatch (no
// handler for its procedure, or a payload that does not decode) is an error
// event on the receiving side, and the receiver also tells the sender with
// a ControlService.Rejected notice, so that the side that made the mistake
// hears of it: the primary as an ErrorEvent for that worker, a worker
// through its error handler (WithErrorHandler). A request/response call
// needs none of this: its caller gets the error as the call's result.
//
// Notices are bounded so that a flood of bad sends cannot make the receiver
// write without bound: at most rejectBurst at once and rejectRate a second
// per link (beyond that the sender is not told; the receiver still reports
// each), each at most rejectMaxProcedure bytes of procedure name.
const (
	rejectBurst        = 16
	rejectRate         = 16 // notices per second, refilled continuously
	rejectMaxProcedure = 256
)

// rejectBudget is a token bucket of notices, shared by the two lanes'
// drainers.
type rejectBudget struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// take reports whether a notice may be sent at now, and spends it.
func (b *rejectBudget) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = rejectBurst
	} else {
		b.tokens = min(rejectBurst, b.tokens+now.Sub(b.last).Seconds()*rejectRate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// notifyRejected tells the sender of a fire-and-forget message that it was
// rejected with e. It runs on either lane's drainer and never blocks.
func (ep *endpoint) notifyRejected(procedure string, e *Error) {
	if procedure == controlServiceRejectedProcedure || !ep.rejects.take(time.Now()) {
		return // never answer a notice with a notice
	}
	h := wire.Header{Procedure: controlServiceRejectedProcedure, Flags: wire.FlagSystem}
	req := &herdv1.RejectedRequest{Procedure: shortProcedure(procedure), Code: herdv1.Code(e.Code())}
	// SendOwned does not wait for room in the write queue; the budget
	// bounds what it queues.
	if err := ep.link.SendOwned(&h, req, nil); err != nil {
		ep.log.Debug("herd: rejected notice not sent", "procedure", req.Procedure, "error", err)
	}
}

// shortProcedure makes a procedure name from the wire fit a notice: valid
// UTF-8 (a proto string must be), at most rejectMaxProcedure bytes.
func shortProcedure(p string) string {
	p = strings.ToValidUTF8(p, "\uFFFD")
	if len(p) <= rejectMaxProcedure {
		return p
	}
	cut := rejectMaxProcedure
	for cut > 0 && !utf8.RuneStart(p[cut]) {
		cut--
	}
	return p[:cut]
}

// rejectedError is the sender's error event for a notice from peer. The
// notice is the peer's word (a worker's, on the primary): its code and
// procedure are kept within what a notice can say.
func rejectedError(peer string, req *herdv1.RejectedRequest) (Code, string, error) {
	code := Code(req.GetCode())
	if code == 0 || int(code) >= len(codeNames) {
		code = CodeUnknown
	}
	what := "does not serve it"
	if code == CodeInvalidArgument {
		what = "could not decode its payload"
	}
	proc := shortProcedure(req.GetProcedure())
	return code, proc, NewError(code, fmt.Errorf("%s rejected a fire-and-forget message to %s: %s", peer, proc, what))
}

// rejected serves ControlService.Rejected on the primary: an error event
// for the worker that sent the notice.
func (p *Primary) rejected(ctx context.Context, req *herdv1.RejectedRequest) {
	w, _ := WorkerFromContext(ctx)
	w.ep.reportError(rejectedError(fmt.Sprintf("worker %d", w.id), req)) // via the user lane
}

// rejected serves ControlService.Rejected in a worker: its error handler.
func (s *Self) rejected(ctx context.Context, req *herdv1.RejectedRequest) {
	s.ep.reportError(rejectedError("the primary", req)) // via the user lane
}
