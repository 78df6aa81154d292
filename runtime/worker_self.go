package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// ErrNotWorker is returned by NewSelf in a process that is not a worker.
var ErrNotWorker = errors.New("herd: not a worker")

// Self is a worker's view of itself and of its link to the primary (Node's
// cluster.worker). It is a Registrar, for the services the worker serves to
// the primary, and a ClientConn, for calls to the primary's services.
//
// Create it with NewSelf, register handlers, then Start it: the handshake
// makes the worker online. There is one Self per worker process.
type Self struct {
	id  uint64
	cfg selfConfig
	mux Mux
	ep  *endpoint
	rpc controlServiceClient // the primary's control handlers, over ep

	control Mux
	ls      listenerSet // cluster listeners (worker_listen_unix.go)

	hookMu sync.Mutex
	hooks  []func(context.Context) error

	disconnecting atomic.Bool
	byPrimary     atomic.Bool  // the primary's Disconnect started the disconnect
	orphanCode    atomic.Int32 // exit status when the link ends without a disconnect
	endOnce       sync.Once
	done          chan struct{}
	stopWatch     func()

	userHold     chan struct{} // closed when user handlers may run (Start)
	userHoldOnce sync.Once

	maxRequests atomic.Uint64 // from the handshake (self_recycle.go)
	requests    atomic.Uint64 // RequestDone's count
}

type selfConfig struct {
	endpoint         endpointConfig
	exitOnDisconnect bool
	orphanTimeout    time.Duration
	drainTimeout     time.Duration
	onError          func(*herdv1.ErrorEvent)
	exit             func(code int)
	stopSignals      []os.Signal
}

// SelfOption configures a Self.
type SelfOption interface {
	applyToSelf(*selfConfig)
}

type selfOptionFunc func(*selfConfig)

func (f selfOptionFunc) applyToSelf(c *selfConfig) { f(c) }

// WithExitOnDisconnect sets whether the worker process exits (status 0) once
// a disconnect has run its drain hooks and closed the link. Default true.
// With false, Done is closed and the program decides when to return.
func WithExitOnDisconnect(exit bool) SelfOption {
	return selfOptionFunc(func(c *selfConfig) { c.exitOnDisconnect = exit })
}

// WithOrphanTimeout bounds the drain hooks when the primary dies (the link
// ends without a disconnect); the worker then exits. Default 3s.
func WithOrphanTimeout(d time.Duration) SelfOption {
	return selfOptionFunc(func(c *selfConfig) { c.orphanTimeout = d })
}

// WithDrainTimeout bounds the drain hooks of a disconnect whose context has
// no deadline. Default 30s.
func WithDrainTimeout(d time.Duration) SelfOption {
	return selfOptionFunc(func(c *selfConfig) { c.drainTimeout = d })
}

// WithErrorHandler receives the worker side's error events: a handler error
// of a fire-and-forget message, an unknown procedure, an undecodable
// payload. The default logs them.
func WithErrorHandler(fn func(*herdv1.ErrorEvent)) SelfOption {
	return selfOptionFunc(func(c *selfConfig) { c.onError = fn })
}

var selfCreated atomic.Bool

// current is the started Self of this process, for Listen.
var current atomic.Pointer[Self]

// testHookLinkStarted, when set (by a test's worker, before Start), runs in
// Start once the link reads frames and before the handshake: it widens the
// window in which the primary's first messages arrive.
var testHookLinkStarted func()

// NewSelf returns this worker's Self. It fails with ErrNotWorker in the
// primary, and on a second call.
func NewSelf(opts ...SelfOption) (*Self, error) {
	if !IsWorker() {
		return nil, ErrNotWorker
	}
	if !selfCreated.CompareAndSwap(false, true) {
		return nil, errors.New("herd: NewSelf called twice")
	}
	s := &Self{
		id: selfID,
		cfg: selfConfig{
			exitOnDisconnect: true,
			orphanTimeout:    3 * time.Second,
			drainTimeout:     30 * time.Second,
			exit:             os.Exit,
			stopSignals:      defaultStopSignals,
		},
		done:     make(chan struct{}),
		userHold: make(chan struct{}),
	}
	for _, o := range opts {
		o.applyToSelf(&s.cfg)
	}
	s.cfg.endpoint = s.cfg.endpoint.withDefaults()
	if s.cfg.onError == nil {
		log := s.cfg.endpoint.logger
		s.cfg.onError = func(ev *herdv1.ErrorEvent) {
			log.Warn("herd: worker error", "code", Code(ev.GetCode()), "procedure", ev.GetProcedure(), "error", ev.GetMessage())
		}
	}
	if err := s.registerControl(); err != nil {
		return nil, err
	}
	return s, nil
}

// ID returns the worker's cluster ID.
func (s *Self) ID() uint64 { return s.id }

// Register implements Registrar: the handlers serve calls from the primary.
// Register before Start so that no call finds its handler missing.
func (s *Self) Register(handlers ...*Handler) error { return s.mux.Register(handlers...) }

// OnDisconnect adds a drain hook. Hooks run, in the order added, when a
// disconnect starts (from either side) or the primary dies; their context
// ends at the disconnect's deadline. Stop taking new work in a hook and
// finish what is in flight; for an http.Server, serve it with
// runtime/herdhttp's Serve, which registers such a hook (Shutdown alone
// fails the requests that race with it).
func (s *Self) OnDisconnect(hook func(ctx context.Context) error) {
	s.hookMu.Lock()
	s.hooks = append(s.hooks, hook)
	s.hookMu.Unlock()
}

// Start connects to the primary and completes the handshake; the worker is
// online when it returns. From then on SIGINT and SIGTERM make the worker
// stop gracefully, coordinated with the primary (WithStopSignals).
func (s *Self) Start(ctx context.Context) error {
	f := os.NewFile(linkFD, "herd-link")
	if f == nil {
		return errors.New("herd: no link on descriptor 3")
	}
	s.ep = newEndpoint(s.cfg.endpoint, &s.control, &s.mux, nil, context.Background(), s.errorEvent)
	s.ep.peer = Peer{Primary: true}
	s.rpc = newControlClient(s.ep)
	// The user lane holds until the handshake is over: a call the primary
	// makes right after Fork is read as soon as the link starts, and its
	// handler must find the worker started (Listen works, and its Listen
	// request follows the Hello on the link). Control handlers, on their
	// own lanes, are not held: a Disconnect during the handshake is served.
	s.ep.runEvent(func() { <-s.userHold })
	// Before the link starts: a Disconnect read at once ends the worker,
	// and that reads stopWatch.
	s.stopWatch = watchParentDeath(selfPrimaryPID, s.orphaned)
	if err := s.ep.start(f); err != nil {
		s.stopWatch()
		return fmt.Errorf("herd: start worker %d: %w", s.id, err)
	}
	go s.watchLink()
	if testHookLinkStarted != nil {
		testHookLinkStarted()
	}
	req := &herdv1.HelloRequest{ProtocolVersion: ProtocolVersion, WorkerId: s.id, Pid: int64(os.Getpid())}
	// Listen goes through the link from now on.
	current.Store(s)
	serveSignals := s.catchStopSignals()
	res, err := s.rpc.Hello(ctx, req)
	if err != nil {
		current.Store(nil)
		s.releaseUserLane()
		if s.byPrimary.Load() {
			// The primary disconnected this worker during the handshake
			// (Worker.Disconnect right after Fork): that is a clean stop,
			// not a failed start. The disconnect ends the process with
			// status 0 unless WithExitOnDisconnect(false).
			serveSignals(true)
			<-s.done
			if s.cfg.exitOnDisconnect {
				select {} // the disconnect path is exiting
			}
			return fmt.Errorf("herd: worker %d handshake: %w", s.id, ErrDisconnected)
		}
		serveSignals(false)
		return fmt.Errorf("herd: worker %d handshake: %w", s.id, err)
	}
	s.maxRequests.Store(res.GetMaxRequests())
	s.releaseUserLane()
	serveSignals(true)
	return nil
}

// releaseUserLane lets the user handlers run, once the handshake is over
// or a disconnect started during it (whose drain is queued on the user
// lane).
func (s *Self) releaseUserLane() { s.userHoldOnce.Do(func() { close(s.userHold) }) }

// ErrDisconnected is returned by Start when the primary disconnected the
// worker before the handshake completed and the worker does not exit on
// disconnect (WithExitOnDisconnect(false)); otherwise the process exits with
// status 0, as after any disconnect.
var ErrDisconnected = errors.New("herd: disconnected by the primary")

// Ready tells the primary that this worker is ready for work, and returns
// once the primary has it. A pool declared WithReadiness(ReadyExplicit)
// waits for it before it counts the worker as started (and, during a
// rolling reload, before it disconnects the worker this one replaces); in
// any pool it makes the worker ready at once. Call it after Start.
func (s *Self) Ready(ctx context.Context) error {
	if s.ep == nil {
		return errors.New("herd: Ready before Self.Start")
	}
	if _, err := s.rpc.Ready(ctx, &herdv1.ReadyRequest{}); err != nil {
		return fmt.Errorf("herd: worker %d ready: %w", s.id, err)
	}
	return nil
}

// Call implements ClientConn: a request/response call to the primary.
func (s *Self) Call(ctx context.Context, procedure string, req, res proto.Message, opts ...CallOption) error {
	return s.ep.userCall(ctx, procedure, req, res, opts)
}

// Send implements ClientConn: a fire-and-forget message to the primary.
func (s *Self) Send(ctx context.Context, procedure string, req proto.Message, opts ...CallOption) error {
	return s.ep.userSend(ctx, procedure, req, opts)
}

// IsConnected reports whether the link is up and no disconnect has started.
func (s *Self) IsConnected() bool {
	select {
	case <-s.ep.closed:
		return false
	default:
		return !s.disconnecting.Load()
	}
}

// Done returns a channel closed when the worker has disconnected.
func (s *Self) Done() <-chan struct{} { return s.done }

// Disconnect disconnects from the primary, started by the worker (Node's
// cluster.worker.disconnect): the drain hooks run, the primary is told (so
// its exit event says exitedAfterDisconnect), the link closes, and the
// process exits unless WithExitOnDisconnect(false).
func (s *Self) Disconnect(ctx context.Context) error {
	if !s.disconnecting.CompareAndSwap(false, true) {
		select {
		case <-s.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.closeListeners()
	hookErr := s.runHooks(ctx)
	_, err := s.rpc.Disconnect(ctx, &herdv1.DisconnectRequest{})
	s.end(ctx, s.cfg.exitOnDisconnect)
	return errors.Join(hookErr, err)
}

// Kill ends the worker at once (Node's cluster.worker.kill): the primary is
// told (its exit event says exitedAfterDisconnect), the link closes and the
// process exits with status 0. Drain hooks do not run.
func (s *Self) Kill() {
	s.disconnecting.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = s.rpc.Disconnect(ctx, &herdv1.DisconnectRequest{})
	s.end(ctx, true)
}

// primaryDisconnect serves the primary's Disconnect: stop taking new user
// messages, run the drain hooks, acknowledge, handle the user messages
// already received, then close the link and exit. The request is control
// traffic: it runs on the control lane, at once, even while a user handler
// runs (the drain hooks may be what ends that handler), and the rest of the
// drain is queued on the user lane behind the messages received.
func (s *Self) primaryDisconnect(ctx context.Context, req *herdv1.DisconnectRequest) *Response[herdv1.DisconnectResponse] {
	res := NewResponse(&herdv1.DisconnectResponse{})
	if !s.disconnecting.CompareAndSwap(false, true) {
		return res // a disconnect is under way
	}
	s.byPrimary.Store(true)
	s.releaseUserLane()
	s.ep.credit.stop()
	s.closeListeners()
	dctx, cancel := s.drainContext(req.GetDeadlineUnixNano())
	err := s.runHooks(dctx)
	cancel()
	res.AfterReply(func() {
		s.ep.afterReceived(func() {
			fctx, cancel := context.WithTimeout(context.Background(), s.cfg.drainTimeout)
			defer cancel()
			s.end(fctx, s.cfg.exitOnDisconnect)
		})
	})
	if err != nil {
		s.errorEvent(CodeInternal, controlServiceDisconnectProcedure, fmt.Errorf("drain hooks: %w", err))
	}
	return res
}

func (s *Self) drainContext(deadlineUnixNano int64) (context.Context, context.CancelFunc) {
	if deadlineUnixNano != 0 {
		return context.WithDeadline(context.Background(), time.Unix(0, deadlineUnixNano))
	}
	return context.WithTimeout(context.Background(), s.cfg.drainTimeout)
}

// runHooks runs the drain hooks in order and joins their errors.
func (s *Self) runHooks(ctx context.Context) error {
	s.hookMu.Lock()
	hooks := append([]func(context.Context) error(nil), s.hooks...)
	s.hookMu.Unlock()
	var errs []error
	for _, h := range hooks {
		if err := h(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// end flushes and closes the link, closes Done, and exits when asked.
func (s *Self) end(ctx context.Context, exit bool) { s.endCode(ctx, exit, 0) }

// endCode is end with the exit status to exit with.
func (s *Self) endCode(ctx context.Context, exit bool, code int) {
	s.endOnce.Do(func() {
		_ = s.ep.link.Shutdown(ctx)
		if s.stopWatch != nil {
			s.stopWatch()
		}
		close(s.done)
	})
	if exit {
		s.cfg.exit(code)
	}
}

// watchLink handles the end of the link: when no disconnect started, the
// primary is gone, and the worker runs its hooks briefly and exits.
func (s *Self) watchLink() {
	<-s.ep.closed
	if code, err := s.ep.linkFailure(); err != nil {
		s.errorEvent(code, "", fmt.Errorf("link: %w", err))
		// The primary must not take this exit for a clean one.
		s.orphanCode.Store(ExitLinkFailure)
	}
	if !s.disconnecting.Load() {
		s.orphaned()
	}
}

// ExitLinkFailure is the exit status of a worker whose link to the primary
// ended with an error (a protocol error, an oversize frame, an I/O error)
// rather than a close by either side: 76, EX_PROTOCOL in sysexits.h. The
// primary's exit event then has cause EXIT_CAUSE_ERROR.
const ExitLinkFailure = 76

var orphanOnce sync.Once

// orphaned runs when the primary died: drain hooks bounded by the orphan
// timeout, then exit, even when a hook ignores its context.
func (s *Self) orphaned() {
	orphanOnce.Do(func() {
		s.disconnecting.Store(true)
		code := int(s.orphanCode.Load())
		time.AfterFunc(s.cfg.orphanTimeout+time.Second, func() { s.cfg.exit(code) })
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.orphanTimeout)
		defer cancel()
		s.closeListeners()
		if err := s.runHooks(ctx); err != nil {
			s.cfg.endpoint.logger.Warn("herd: drain hooks after the primary died", "error", err)
		}
		s.endCode(ctx, true, code)
	})
}

// errorEvent delivers an error event of the worker side now, on the calling
// goroutine (the endpoint calls it on its user lane; see reportError).
func (s *Self) errorEvent(code Code, procedure string, err error) {
	s.cfg.onError(&herdv1.ErrorEvent{
		Worker:    &herdv1.Worker{Id: s.id, Pid: int64(os.Getpid())},
		Code:      herdv1.Code(code),
		Message:   err.Error(),
		Procedure: procedure,
	})
}
