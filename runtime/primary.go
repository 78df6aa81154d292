package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/link"
)

// ErrNotPrimary is returned when a primary-only operation runs in a worker.
var ErrNotPrimary = errors.New("herd: not the primary")

// Primary forks and manages workers (Node's cluster module in the primary).
// It is a Registrar: handlers registered on it serve calls from every worker
// (WorkerFromContext tells which), and the generated EventService handler
// registered on it receives every worker's cluster events.
type Primary struct {
	log     *slog.Logger
	mux     Mux
	control Mux

	mu       sync.Mutex
	settings settings
	nextID   uint64
	workers  map[uint64]*Worker
	live     sync.WaitGroup

	ports *portTable // shared server ports (listen_*.go, handle_*.go)

	events atomic.Pointer[eventLog] // the admin socket's event stream, when served (admin_events.go)
}

// NewPrimary returns a primary with the given settings. It may be created in
// any process, but only a primary should fork. It takes over the sockets
// systemd passed to the process, if any, as go-systemd's
// activation.Files(true) does: they become close-on-exec and LISTEN_PID,
// LISTEN_FDS and LISTEN_FDNAMES leave the environment, so that no worker
// inherits them; workers listen on them with WithListenFDName or
// WithListenFD.
func NewPrimary(opts ...PrimaryOption) *Primary {
	takeActivation() // systemd's sockets: not for the workers to inherit
	p := &Primary{workers: make(map[uint64]*Worker)}
	p.settings.workerProcs = -1
	p.ports = newPortTable(p)
	pol, polErr := envPolicy()
	if polErr == nil {
		p.settings.policy = pol
	}
	for _, o := range opts {
		o.applyToPrimary(&p.settings)
	}
	p.settings = p.settings.withDefaults()
	p.log = p.settings.endpoint.logger
	if polErr != nil {
		p.log.Warn("herd: "+EnvSchedPolicy+" ignored", "error", polErr)
	}
	p.registerControl()
	startForker()
	startReaper(p.log, p.settings.subreaper) // PID 1 or WithSubreaper: reaper_linux.go
	return p
}

// Setup changes the settings applied to later forks (Node's setupPrimary).
// Workers already running are not affected.
func (p *Primary) Setup(opts ...PrimaryOption) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range opts {
		o.applyToPrimary(&p.settings)
	}
	p.settings = p.settings.withDefaults()
}

// Register implements Registrar: the handlers serve calls from every worker.
func (p *Primary) Register(handlers ...*Handler) error { return p.mux.Register(handlers...) }

// Fork starts a worker (Node's cluster.fork). The worker's fork event is
// queued before Fork returns; its online event follows its handshake.
func (p *Primary) Fork(ctx context.Context, opts ...ForkOption) (*Worker, error) {
	if IsWorker() {
		return nil, ErrNotPrimary
	}
	var fc forkConfig
	for _, o := range opts {
		o.applyToFork(&fc)
	}
	p.mu.Lock()
	s := p.settings
	p.nextID++
	id := p.nextID
	p.mu.Unlock()

	w := &Worker{
		id: id, primary: p,
		online: make(chan struct{}), linkClosed: make(chan struct{}),
		exited: make(chan struct{}), done: make(chan struct{}),
		abandon: make(chan struct{}), handlerGrace: s.handlerGrace,
	}
	w.ctx = context.WithValue(context.Background(), workerKey{}, w)
	w.handlerCtx, w.cancelHandlers = context.WithCancel(w.ctx)
	w.trust = s.trust.forWorker(s.dir)
	for _, fn := range fc.register {
		if err := fn(&w.mux); err != nil {
			return nil, fmt.Errorf("herd: fork worker %d: register: %w", id, err)
		}
	}

	cmd, err := p.command(id, s, fc)
	if err != nil {
		return nil, fmt.Errorf("herd: fork worker %d: %w", id, err)
	}
	ours, theirs, err := link.Pair()
	if err != nil {
		return nil, fmt.Errorf("herd: fork worker %d: %w", id, err)
	}
	cmd.ExtraFiles = append([]*os.File{theirs}, s.extraFiles...)
	var pipes []*os.File
	if s.silent {
		if pipes, err = w.silence(cmd); err != nil {
			ours.Close()
			theirs.Close()
			return nil, fmt.Errorf("herd: fork worker %d: %w", id, err)
		}
	}
	if fc.tail != nil && !s.silent {
		// The worker writes into a pipe the tail relays to where its
		// stderr would have gone, keeping the last lines.
		r, wr, err := os.Pipe()
		if err != nil {
			ours.Close()
			theirs.Close()
			return nil, fmt.Errorf("herd: fork worker %d: %w", id, err)
		}
		fc.tail.start(r, cmd.Stderr)
		cmd.Stderr = wr
		pipes = append(pipes, wr)
		w.tail = fc.tail
	}
	w.observe = fc.observe
	if fc.pool != nil {
		w.pool = fc.pool
		w.unready.Store(true) // until the pool counts it ready
	}
	prepareCommand(cmd, s.credential)
	if pipes, err = pipeOutput(cmd, pipes); err != nil { // WithOutputPrefix: logging.go
		closeFiles(append(pipes, ours, theirs))
		return nil, fmt.Errorf("herd: fork worker %d: %w", id, err)
	}

	w.ep = newEndpoint(s.endpoint, &p.control, &w.mux, &p.mux, w.handlerCtx, w.errorEvent)
	w.rpc = newControlClient(w.ep)
	w.ep.peer = Peer{WorkerID: id}
	err = startProcess(cmd)
	theirs.Close()
	for _, f := range pipes {
		f.Close() // the child's ends
	}
	if err != nil {
		ours.Close()
		w.closeOutput()
		err = fmt.Errorf("herd: fork worker %d: %w", id, err)
		p.errorEvent(ctx, &herdv1.Worker{Id: id}, CodeUnavailable, err)
		return nil, err
	}
	w.cmd = cmd
	w.pid = cmd.Process.Pid
	w.started = time.Now()
	w.oom.arm(w.pid) // exit_cause.go
	fork := &herdv1.ForkEvent{Worker: w.ident()}
	w.ep.runEvent(func() { w.emit(eventForkProcedure, fork) })
	if err := w.ep.start(ours); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		w.closeOutput()
		return nil, fmt.Errorf("herd: fork worker %d: %w", id, err)
	}
	p.mu.Lock()
	p.workers[id] = w
	p.live.Add(1)
	p.mu.Unlock()
	go w.watchLink()
	go w.supervise()
	if s.hello > 0 {
		go w.helloTimeout(s.hello)
	}
	return w, nil
}

// command builds the worker's exec.Cmd from the settings.
func (p *Primary) command(id uint64, s settings, fc forkConfig) (*exec.Cmd, error) {
	path := s.exec
	args := s.args
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find executable: %w", err)
		}
		path = exe
	}
	if !s.argsSet && s.exec == "" {
		args = os.Args[1:]
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = s.dir
	env := make([]string, 0, len(os.Environ())+len(s.env)+len(fc.env)+2)
	for _, list := range [][]string{os.Environ(), s.env, fc.env} {
		for _, kv := range list {
			if k, _, _ := strings.Cut(kv, "="); k == EnvWorkerID || k == EnvPrimaryPID || k == envNonDumpable || k == EnvAdminSocket || systemdOnly(k) {
				continue
			}
			env = append(env, kv)
		}
	}
	if kv := workerProcsEnv(env, s.workerProcs, fc.poolSize, DefaultPoolSize()); kv != "" {
		env = append(env, kv)
	}
	cmd.Env = append(env,
		EnvWorkerID+"="+strconv.FormatUint(id, 10),
		EnvPrimaryPID+"="+strconv.Itoa(os.Getpid()))
	if s.trust.nonDumpableFor(s.credential) {
		cmd.Env = append(cmd.Env, envNonDumpable+"=1")
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if s.stdout != nil {
		cmd.Stdout = s.stdout
	}
	if s.stderr != nil {
		cmd.Stderr = s.stderr
	}
	if s.prefixOutput && !s.silent {
		cmd.Stdout, cmd.Stderr = newLineWriter(cmd.Stdout, id), newLineWriter(cmd.Stderr, id) // logging.go
	}
	return cmd, nil
}

// Workers returns the live workers (forked and not yet exited), by ID. A
// worker leaves the list when its process exits, before its exit event.
func (p *Primary) Workers() []*Worker {
	p.mu.Lock()
	ws := make([]*Worker, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	slices.SortFunc(ws, func(a, b *Worker) int { return int(a.id) - int(b.id) })
	return ws
}

// Worker returns the live worker with the given ID (Node's
// cluster.workers[id]).
func (p *Primary) Worker(id uint64) (*Worker, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.workers[id]
	return w, ok
}

// Disconnect disconnects every live worker gracefully, concurrently (Node's
// cluster.disconnect), and returns once they have all exited. Workers that
// have not exited when ctx ends are killed. It is safe with no workers and
// while some are already disconnecting.
//
// With $NOTIFY_SOCKET set (a systemd service of Type=notify), it first sends
// STOPPING=1.
func (p *Primary) Disconnect(ctx context.Context) error {
	p.notifyStopping()
	ws := p.Workers()
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.Disconnect(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Wait blocks until every worker forked so far has exited and its exit event
// has been handled, or ctx ends. Do not call it from an event handler.
func (p *Primary) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		p.live.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// remove takes an exited worker out of the table.
func (p *Primary) remove(w *Worker) {
	p.mu.Lock()
	delete(p.workers, w.id)
	p.mu.Unlock()
}
