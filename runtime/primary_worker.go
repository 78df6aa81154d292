package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// State is a worker's lifecycle state, as in Node: none → online →
// listening → disconnected → dead.
type State int32

// Worker states.
const (
	StateNone State = iota
	StateOnline
	StateListening
	StateDisconnected
	StateDead
)

// String returns the state's name as Node spells it.
func (s State) String() string {
	switch s {
	case StateNone:
		return "none"
	case StateOnline:
		return "online"
	case StateListening:
		return "listening"
	case StateDisconnected:
		return "disconnected"
	case StateDead:
		return "dead"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// linkDrainTimeout bounds how long the primary keeps reading a dead worker's
// link for frames still in flight when a process the worker started holds
// the other end open.
const linkDrainTimeout = 2 * time.Second

// Worker is the primary's handle on one worker process (Node's Worker in the
// primary). It is a ClientConn, for calls to the worker's services, and a
// Registrar, for handlers that serve calls from this worker only.
type Worker struct {
	id      uint64
	pid     int
	primary *Primary
	cmd     *exec.Cmd
	ep      *endpoint
	rpc     controlServiceClient // the worker's control handlers, over ep
	mux     Mux
	ctx     context.Context // events' context: carries the worker
	trust   workerTrust     // what it may ask of the primary (trust.go)

	// handlerCtx is the parent of the contexts of handlers of this worker's
	// messages; cancelHandlers ends it once the worker has exited.
	handlerCtx     context.Context
	cancelHandlers context.CancelFunc
	handlerGrace   time.Duration
	// abandon is closed when the handler grace has passed: the disconnect
	// and exit events no longer wait for the worker's mailbox.
	abandon        chan struct{}
	disconnectOnce sync.Once
	exitOnce       sync.Once

	state           atomic.Int32
	afterDisconnect atomic.Bool
	disconnecting   atomic.Bool
	killed          atomic.Bool
	helloExpired    atomic.Bool  // killed by the hello timeout
	killSignal      atomic.Value // string: the name of the signal Kill sent last
	signalled       atomic.Bool  // reported a stop signal (primary_signal.go)
	readyExpired    atomic.Bool  // killed by a pool's ready timeout
	saidReady       atomic.Bool  // called Self.Ready
	// unready is set, from its fork, on a pool's worker until the pool
	// counts it ready: round-robin hands it no connection meanwhile (they
	// wait in the primary or go to ready workers).
	unready atomic.Bool
	// watchdogFired is set by a pool's watchdog before it signals the
	// worker (pool_watchdog.go): its exit's cause is EXIT_CAUSE_WATCHDOG.
	watchdogFired atomic.Bool
	pool          *poolFork // the pool's hold on it, nil outside a pool
	started       time.Time // when the process started
	oom           oomWatch  // its memory cgroup's OOM kills (exit_cause.go)
	// asked is set by a disconnect the primary's user asked for
	// (Worker.Disconnect, Primary.Disconnect): a pool does not replace
	// such a worker.
	asked      atomic.Bool
	observe    func(w *Worker, procedure string, msg proto.Message)
	tail       *stderrTail
	online     chan struct{}
	onlineOnce sync.Once

	outMu          sync.Mutex
	stdout, stderr *os.File
	outClaimed     [2]bool

	linkClosed chan struct{} // the disconnect event has been queued
	exited     chan struct{} // the process has exited; exit is set
	exit       *herdv1.ExitEvent
	done       chan struct{} // the exit event has been handled
}

// ID returns the worker's cluster ID: 1, 2, 3, ... never reused.
func (w *Worker) ID() uint64 { return w.id }

// PID returns the worker's process ID.
func (w *Worker) PID() int { return w.pid }

// Process returns the worker's process.
func (w *Worker) Process() *os.Process { return w.cmd.Process }

// State returns the worker's state.
func (w *Worker) State() State { return State(w.state.Load()) }

// IsConnected reports whether the worker's link is up and no disconnect has
// started.
func (w *Worker) IsConnected() bool {
	select {
	case <-w.ep.closed:
		return false
	default:
		return !w.disconnecting.Load()
	}
}

// IsDead reports whether the worker's process has exited.
func (w *Worker) IsDead() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// ExitedAfterDisconnect is Node's exitedAfterDisconnect: true once a
// disconnect was started by the primary (Disconnect, including the one that
// follows a stop signal the worker reported) or by the worker
// (Self.Disconnect or Self.Kill); false for a crash, an exit of its own, a
// signal, or Kill from the primary.
func (w *Worker) ExitedAfterDisconnect() bool { return w.afterDisconnect.Load() }

// Register implements Registrar: the handlers serve calls from this worker
// only, ahead of the primary's.
func (w *Worker) Register(handlers ...*Handler) error { return w.mux.Register(handlers...) }

// Call implements ClientConn: a request/response call to a service the
// worker registered. A call to a dead worker fails at once with
// CodeUnavailable.
func (w *Worker) Call(ctx context.Context, procedure string, req, res proto.Message, opts ...CallOption) error {
	return w.ep.userCall(ctx, procedure, req, res, opts)
}

// Send implements ClientConn: a fire-and-forget message to the worker.
func (w *Worker) Send(ctx context.Context, procedure string, req proto.Message, opts ...CallOption) error {
	return w.ep.userSend(ctx, procedure, req, opts)
}

// Kill sends sig to the worker's process (default SIGTERM when sig is 0),
// with no graceful step (Node's worker.kill). The exit that follows is
// reported with cause "killed" and ExitedAfterDisconnect false, unless a
// disconnect had started. A worker that drains on SIGINT and SIGTERM
// (WithStopSignals) learns from the primary that the signal is Kill's and
// dies of it.
func (w *Worker) Kill(sig syscall.Signal) error {
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if w.IsDead() {
		return nil
	}
	w.killed.Store(true)
	w.killSignal.Store(signalName(sig))
	if err := w.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("herd: kill worker %d: %w", w.id, err)
	}
	return nil
}

// Disconnect disconnects the worker gracefully (Node's worker.disconnect):
// the worker stops taking work, runs its drain hooks, closes its link and
// exits. Disconnect returns when the process has exited. When ctx ends
// first, the worker is killed with SIGKILL and ctx's error returned.
func (w *Worker) Disconnect(ctx context.Context) error {
	w.asked.Store(true)
	w.beginDisconnect(ctx)
	select {
	case <-w.exited:
		return nil
	case <-ctx.Done():
		w.killed.Store(true)
		_ = w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.exited
		return fmt.Errorf("herd: disconnect worker %d: %w", w.id, ctx.Err())
	}
}

// beginDisconnect starts a graceful disconnect and returns at once: routing
// to the worker stops, and the worker is asked to drain, with ctx's deadline.
func (w *Worker) beginDisconnect(ctx context.Context) {
	w.afterDisconnect.Store(true)
	w.disconnecting.Store(true)
	w.primary.ports.stopRouting(w)
	if !w.IsDead() {
		req := &herdv1.DisconnectRequest{}
		if d, ok := ctx.Deadline(); ok {
			req.DeadlineUnixNano = d.UnixNano()
		}
		go func() {
			// The reply only says the drain hooks ran; the exit is what counts.
			_, _ = w.rpc.Disconnect(ctx, req)
		}()
	}
}

// Exited returns a channel closed when the worker's process has exited.
func (w *Worker) Exited() <-chan struct{} { return w.exited }

// Done returns a channel closed when the worker has exited and its exit
// event has been handled: after it nothing more happens for this worker.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Wait waits for the worker's exit event to be handled and returns it, or
// ctx's error. Do not call it from this worker's own event handlers.
func (w *Worker) Wait(ctx context.Context) (*herdv1.ExitEvent, error) {
	select {
	case <-w.done:
		return w.exit, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Stdout returns the read end of the worker's stdout pipe when the primary
// was set up WithSilent, else nil. The caller owns it: it must read it (a
// worker blocks when the pipe is full) and close it.
func (w *Worker) Stdout() io.ReadCloser { return w.claimOutput(0) }

// Stderr is Stdout for the worker's stderr.
func (w *Worker) Stderr() io.ReadCloser { return w.claimOutput(1) }

func (w *Worker) claimOutput(i int) io.ReadCloser {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	f := [2]*os.File{w.stdout, w.stderr}[i]
	if f == nil {
		return nil
	}
	w.outClaimed[i] = true
	return f
}

// silence gives cmd pipes for stdout and stderr and returns the child's
// ends, to be closed once it has started.
func (w *Worker) silence(cmd *exec.Cmd) ([]*os.File, error) {
	or, ow, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	er, ew, err := os.Pipe()
	if err != nil {
		or.Close()
		ow.Close()
		return nil, err
	}
	w.stdout, w.stderr = or, er
	cmd.Stdout, cmd.Stderr = ow, ew
	return []*os.File{ow, ew}, nil
}

// closeOutput closes the output pipes nobody claimed.
func (w *Worker) closeOutput() {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	for i, f := range [2]*os.File{w.stdout, w.stderr} {
		if f != nil && !w.outClaimed[i] {
			f.Close()
		}
	}
}

// watchLink queues the disconnect event when the link ends.
func (w *Worker) watchLink() {
	<-w.ep.closed
	w.disconnecting.Store(true)
	w.primary.ports.dropWorker(w)
	// The post waits while the mailbox is full, but not past the handler
	// grace after the worker's exit (supervise then delivers the event).
	if err := w.ep.box.Post(closedCtx{w.abandon}, inbound{event: w.deliverDisconnect}); err != nil {
		w.deliverDisconnect()
	}
	close(w.linkClosed)
}

// deliverDisconnect emits the disconnect event, with the link's failure
// first when it ended on one; once only.
func (w *Worker) deliverDisconnect() {
	w.disconnectOnce.Do(func() {
		if code, failure := w.ep.linkFailure(); failure != nil {
			w.errorEvent(code, "", fmt.Errorf("link: %w", failure))
		}
		if w.State() != StateDead {
			w.state.Store(int32(StateDisconnected))
		}
		w.emit(eventDisconnectProcedure, &herdv1.DisconnectEvent{Worker: w.ident()})
	})
}

// deliverExit emits the exit event and marks the worker done; once only.
func (w *Worker) deliverExit() {
	w.exitOnce.Do(func() {
		w.state.Store(int32(StateDead))
		w.emit(eventExitProcedure, w.exit)
		w.closeOutput()
		close(w.done)
		w.primary.live.Done()
	})
}

// supervise waits for the process to exit and queues the exit event after
// everything the worker sent and after its disconnect event.
func (w *Worker) supervise() {
	err := w.cmd.Wait()
	forgetChild(w.pid) // reaper_linux.go
	code, sig := exitStatus(w.cmd.ProcessState)
	ev := &herdv1.ExitEvent{
		Worker:                w.ident(),
		Code:                  int32(code),
		Signal:                sig,
		ExitedAfterDisconnect: w.afterDisconnect.Load(),
	}
	ev.Cause = w.exitCause(code, sig) // exit_cause.go
	w.exitUsage(ev)
	if err != nil && w.cmd.ProcessState == nil {
		w.primary.log.Warn("herd: wait for worker", "worker", w.id, "pid", w.pid, "error", err)
	}
	if w.tail != nil {
		ev.StderrTail = w.tail.wait(linkDrainTimeout)
	}
	w.exit = ev
	// Out of the table before exited closes: whoever waits for the exit
	// (Disconnect) then finds Workers without it.
	w.primary.remove(w)
	close(w.exited)

	// Frames the worker wrote before it died are still in the socket; read
	// them all. The link ends at EOF, or after linkDrainTimeout when a
	// process the worker started holds its end open.
	select {
	case <-w.ep.closed:
	case <-time.After(linkDrainTimeout):
		w.ep.link.Abort(ErrLinkClosed)
	}
	if ev.Cause == herdv1.ExitCause_EXIT_CAUSE_CLEAN {
		if _, failure := w.ep.linkFailure(); failure != nil {
			// The link ended with an error (already reported by an error
			// event): the worker did not end cleanly, whatever its status.
			ev.Cause = herdv1.ExitCause_EXIT_CAUSE_ERROR
		}
	}
	if w.pool != nil && w.pool.exit != nil {
		w.pool.exit(w, ev) // the causes only the pool knows
	}

	// The worker is gone and all it wrote has been read: the contexts of
	// its handlers end. The disconnect and exit events follow everything
	// it sent, but a handler that ignores its context holds them for at
	// most the handler grace: they are then delivered anyway, and the
	// worker's messages not yet handled are dropped.
	w.cancelHandlers()
	grace := time.AfterFunc(w.handlerGrace, func() { close(w.abandon) })
	handled := make(chan struct{})
	select {
	case <-w.linkClosed:
		exit := inbound{event: func() {
			w.deliverExit()
			close(handled)
		}}
		if w.ep.box.Post(closedCtx{w.abandon}, exit) == nil {
			select {
			case <-handled:
			case <-w.abandon:
			}
		}
	case <-w.abandon:
	}
	if !grace.Stop() {
		w.ep.drop.Store(true)
	}
	w.deliverDisconnect()
	w.deliverExit()
	w.ep.box.Close()
	w.ep.ctl.Close()
}

// helloTimeout kills a worker that has not completed its handshake in time.
func (w *Worker) helloTimeout(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.online:
	case <-w.exited:
	case <-t.C:
		w.helloExpired.Store(true)
		w.ep.reportError(CodeDeadlineExceeded, controlServiceHelloProcedure, fmt.Errorf("herd: worker %d did not complete its handshake within %v", w.id, d))
		_ = w.Kill(syscall.SIGKILL)
	}
}
