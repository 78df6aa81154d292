package herdtest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
)

// Events records cluster events as lines, in the order they were handled
// (a worker's events in its own order: fork, online, everything it sent,
// disconnect, exit; different workers' events interleave):
//
//	fork 1
//	online 1
//	listening 1 127.0.0.1:8080   (a unix socket: its path)
//	disconnect 1
//	exit 1 code=0 signal= after=true cause=EXIT_CAUSE_CLEAN
//	error 1 deadline_exceeded <message>
//
// The number is the worker's ID; exit has the code, the signal's name, the
// exited_after_disconnect flag and the cause; error has the code's name
// and the message. A test adds lines of its own (a handler's "report 1
// ready") with Add, and waits for any of them with WaitFor. It is safe for
// concurrent use.
type Events struct {
	// Timeout bounds each WaitFor; zero means DefaultTimeout.
	Timeout time.Duration

	t      testing.TB
	mu     sync.Mutex
	lines  []string
	notify chan struct{}
}

// NewEvents returns an empty recorder; Register installs it.
func NewEvents(t testing.TB) *Events {
	return &Events{t: t, notify: make(chan struct{}, 1)}
}

// RecordEvents returns a recorder registered on reg (a Primary, for every
// worker's events), and fails the test if it cannot be (reg already has an
// EventService handler). For one worker's events only, give
// runtime.WithRegister(events.Register) to Fork instead.
func RecordEvents(t testing.TB, reg runtime.Registrar) *Events {
	t.Helper()
	e := NewEvents(t)
	if err := e.Register(reg); err != nil {
		t.Fatalf("herdtest: record events: %v", err)
	}
	return e
}

// Register installs the recorder as reg's herd.v1.EventService handler.
func (e *Events) Register(reg runtime.Registrar) error {
	return herdv1herd.RegisterEventServiceHandler(reg, eventHandler{e})
}

// Add records a line.
func (e *Events) Add(line string) {
	e.mu.Lock()
	e.lines = append(e.lines, line)
	e.mu.Unlock()
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// Addf records a formatted line.
func (e *Events) Addf(format string, args ...any) { e.Add(fmt.Sprintf(format, args...)) }

// Changed returns a channel that receives a value after lines are added: one
// value may stand for several lines, and it serves one waiter at a time. It
// is for a wait of its own that also selects on something else; WaitFor and
// WaitUntil use it.
func (e *Events) Changed() <-chan struct{} { return e.notify }

// All returns the lines recorded so far.
func (e *Events) All() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.lines...)
}

// Of returns the lines about worker id, in order, without the ID: "fork",
// "online", "exit code=0 ...".
func (e *Events) Of(id uint64) []string {
	want := fmt.Sprint(id)
	var out []string
	for _, l := range e.All() {
		kind, rest, _ := strings.Cut(l, " ")
		wid, tail, _ := strings.Cut(rest, " ")
		if wid == want {
			out = append(out, strings.TrimSpace(kind+" "+tail))
		}
	}
	return out
}

// WaitFor waits until a line starting with prefix has been recorded (it may
// have been already) and returns the first such line. It fails the test,
// with every line recorded, when the wait reaches its bound. "exit 2 "
// matches worker 2's exit, not worker 21's.
func (e *Events) WaitFor(prefix string) string {
	e.t.Helper()
	var found string
	e.wait(fmt.Sprintf("no event %q", prefix), func(lines []string) bool {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// WaitUntil waits until cond, given every line recorded so far, reports
// true; it asks again after each new line. It fails the test, naming what
// it waited for and with every line recorded, when the wait reaches its
// bound. Use it for what WaitFor cannot say: "both workers have exited",
// "three reports from worker 2".
func (e *Events) WaitUntil(what string, cond func(lines []string) bool) {
	e.t.Helper()
	e.wait("waiting until "+what, cond)
}

func (e *Events) wait(failure string, cond func(lines []string) bool) {
	e.t.Helper()
	d := limit(e.t, e.Timeout)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		if cond(e.All()) {
			return
		}
		select {
		case <-e.notify:
		case <-timer.C:
			e.t.Fatalf("herdtest: %s after %v; recorded %q", failure, d, e.All())
		}
	}
}

// eventHandler is the recorder's EventService handler, apart so that its
// methods are not the recorder's.
type eventHandler struct{ e *Events }

var _ herdv1herd.EventServiceHandler = eventHandler{}

func (h eventHandler) Fork(ctx context.Context, ev *herdv1.ForkEvent) error {
	h.e.Addf("fork %d", ev.GetWorker().GetId())
	return nil
}

func (h eventHandler) Online(ctx context.Context, ev *herdv1.OnlineEvent) error {
	h.e.Addf("online %d", ev.GetWorker().GetId())
	return nil
}

func (h eventHandler) Listening(ctx context.Context, ev *herdv1.ListeningEvent) error {
	a := ev.GetAddress()
	addr := a.GetAddress()
	if a.GetPort() >= 0 {
		addr = net.JoinHostPort(addr, strconv.Itoa(int(a.GetPort())))
	}
	h.e.Addf("listening %d %s", ev.GetWorker().GetId(), addr)
	return nil
}

func (h eventHandler) Disconnect(ctx context.Context, ev *herdv1.DisconnectEvent) error {
	h.e.Addf("disconnect %d", ev.GetWorker().GetId())
	return nil
}

func (h eventHandler) Exit(ctx context.Context, ev *herdv1.ExitEvent) error {
	h.e.Addf("exit %d code=%d signal=%s after=%t cause=%s", ev.GetWorker().GetId(), ev.GetCode(), ev.GetSignal(), ev.GetExitedAfterDisconnect(), ev.GetCause())
	return nil
}

func (h eventHandler) Error(ctx context.Context, ev *herdv1.ErrorEvent) error {
	h.e.Addf("error %d %s %s", ev.GetWorker().GetId(), runtime.Code(ev.GetCode()), ev.GetMessage())
	return nil
}

func ids(ws []uint64) string {
	s := make([]string, len(ws))
	for i, id := range ws {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ",")
}

// The events of a runtime.Pool:
//
//	ready 3 slot=0 source=READY_SOURCE_LISTENING
//	restart 1 slot=0 attempt=1 delay=100ms boot=false   (1: the worker that exited)
//	slotfailed 11 slot=0 <reason>                        (11: the slot's last worker)
//	reload-started 1,2
//	reload-finished 3,4
//	reload-aborted slot=1 worker=4 <reason>
//	recycled 1 slot=0 reason=RECYCLE_REASON_RSS by=3

func (h eventHandler) Ready(ctx context.Context, ev *herdv1.ReadyEvent) error {
	h.e.Addf("ready %d slot=%d source=%s", ev.GetWorker().GetId(), ev.GetSlot(), ev.GetSource())
	return nil
}

func (h eventHandler) RestartScheduled(ctx context.Context, ev *herdv1.RestartScheduledEvent) error {
	h.e.Addf("restart %d slot=%d attempt=%d delay=%v boot=%t", ev.GetPrevious().GetId(), ev.GetSlot(), ev.GetAttempt(), ev.GetDelay().AsDuration(), ev.GetBootFailure())
	return nil
}

func (h eventHandler) SlotFailed(ctx context.Context, ev *herdv1.SlotFailedEvent) error {
	h.e.Addf("slotfailed %d slot=%d %s", ev.GetLast().GetId(), ev.GetSlot(), ev.GetReason())
	return nil
}

func (h eventHandler) ReloadStarted(ctx context.Context, ev *herdv1.ReloadStartedEvent) error {
	h.e.Add("reload-started " + ids(ev.GetWorkers()))
	return nil
}

func (h eventHandler) ReloadFinished(ctx context.Context, ev *herdv1.ReloadFinishedEvent) error {
	h.e.Add("reload-finished " + ids(ev.GetWorkers()))
	return nil
}

func (h eventHandler) ReloadAborted(ctx context.Context, ev *herdv1.ReloadAbortedEvent) error {
	h.e.Addf("reload-aborted slot=%d worker=%d %s", ev.GetSlot(), ev.GetReplacement().GetId(), ev.GetReason())
	return nil
}

// Recycled records "recycled 1 slot=0 reason=RECYCLE_REASON_REQUESTS by=3"
// (1: the recycled worker, 3: its replacement).
func (h eventHandler) Recycled(ctx context.Context, ev *herdv1.RecycledEvent) error {
	h.e.Addf("recycled %d slot=%d reason=%s by=%d", ev.GetWorker().GetId(), ev.GetSlot(), ev.GetReason(), ev.GetReplacement().GetId())
	return nil
}
