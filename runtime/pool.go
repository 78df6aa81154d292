package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herd-go/herd/actor"
	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// Errors a pool ends with or returns.
var (
	// ErrAllSlotsFailed ends a pool when every slot has failed (too many
	// restarts within the intensity window).
	ErrAllSlotsFailed = errors.New("herd: pool: every slot failed")
	// ErrBootFailure ends a pool when its first workers die before they are
	// ready (WithBootFailures); the error is a *BootError.
	ErrBootFailure = errors.New("herd: pool: workers fail to boot")
	// ErrPoolStopped is returned by operations on a pool that is stopping
	// or has ended.
	ErrPoolStopped = errors.New("herd: pool stopped")
	// ErrPoolStarted is returned by a second Start.
	ErrPoolStarted = errors.New("herd: pool already started")
)

// BootError says why a pool gave up on booting: its last worker's exit, or
// the fork that failed. It matches ErrBootFailure.
type BootError struct {
	// Failures is the number of consecutive boot failures.
	Failures int
	// Slot is the slot of the last one.
	Slot int
	// Worker is the last worker's ID, 0 when its fork failed.
	Worker uint64
	// Code and Signal are its exit status and signal name.
	Code   int
	Signal string
	// Cause classifies its exit.
	Cause herdv1.ExitCause
	// StderrTail is the last lines it wrote to stderr.
	StderrTail string
	// Err is the fork's error, when the fork itself failed.
	Err error
}

func (e *BootError) Error() string {
	var what string
	switch {
	case e.Err != nil:
		what = fmt.Sprintf("fork failed: %v", e.Err)
	case e.Signal != "":
		what = fmt.Sprintf("worker %d was killed by %s (%s)", e.Worker, e.Signal, e.Cause)
	default:
		what = fmt.Sprintf("worker %d exited with code %d (%s)", e.Worker, e.Code, e.Cause)
	}
	msg := fmt.Sprintf("herd: pool: %d workers in a row died before they were ready, none ever was; last, in slot %d: %s", e.Failures, e.Slot, what)
	if e.StderrTail != "" {
		msg += "; its stderr ended with:\n" + e.StderrTail
	}
	return msg
}

// Is makes errors.Is(err, ErrBootFailure) true.
func (e *BootError) Is(target error) bool { return target == ErrBootFailure }

// Unwrap returns the fork's error, if any.
func (e *BootError) Unwrap() error { return e.Err }

// Pool keeps N workers of a primary alive: a supervised pool of slots, each
// holding one worker. A worker that exits without a disconnect the primary
// asked for is replaced in its slot, as its RestartPolicy says, within a
// restart intensity limit: at once when it had been ready for the minimum
// uptime (WithMinUptime, 1 s), else after a backoff delay; Reload replaces every worker
// one slot at a time without ever having fewer ready workers than slots;
// Scale changes the number of slots; Stop (and Run, on SIGINT or SIGTERM)
// stops every worker gracefully. Its events (Ready, RestartScheduled,
// SlotFailed, Reload*) reach the primary's EventService handler in order
// with the workers' own. Under systemd it speaks sd_notify (READY=1,
// STATUS=, WATCHDOG=1: pool_sdnotify.go); WithDrainDelay and
// ReadinessHandler serve load balancers that route by readiness.
//
// A pool forks through its Primary and takes its settings; forks of the
// pool's own are the only ones it looks after.
type Pool struct {
	p   *Primary
	cfg poolConfig
	log *slog.Logger

	reloadMu sync.Mutex // one reload at a time

	mu        sync.Mutex
	slots     []*slot
	nextSlot  int
	started   bool
	stopping  bool
	draining  bool // a stop's drain delay runs (pool_drain.go)
	everReady bool
	bootFails int
	active    sync.WaitGroup // members forked and not yet done
	ended     bool
	err       error
	done      chan struct{}
	force     chan struct{} // closed to skip a stop's graceful steps
	forceOnce sync.Once
	stopOnce  sync.Once
	stopErr   error
	stopDone  chan struct{}
	sd        poolNotify   // systemd notifications (pool_sdnotify.go)
	admin     *adminServer // the admin socket, when served (admin.go)

	sampleStop func() bool // cancels the next RSS sample (pool_recycle.go)
}

// slot is one place in the pool.
type slot struct {
	index     int
	cur       *member // the slot's worker; nil while a restart is pending
	next      *member // a rolling reload's replacement, until it is ready
	restarts  actor.Restarts
	intensity actor.Intensity
	recycles  actor.Intensity // recycles allowed (pool_recycle.go)
	cancel    func() bool     // cancels a pending restart
	// dead are the workers the slot lost since its last ready worker,
	// whose reuseport sockets wait for its next worker (orphans,
	// primary_reuseport_orphan_unix.go).
	dead    []*Worker
	failed  bool
	removed bool
	stat    slotStat // for Status (pool_status.go)
}

// member is one worker of the pool.
type member struct {
	w         *Worker
	slot      *slot
	started   time.Time
	readyAt   time.Time     // when it became ready (the pool's clock)
	ready     chan struct{} // closed when ready
	dead      chan struct{} // closed when its exit has been handled
	isReady   bool
	isDead    bool
	retiring  bool // the pool asked it to go
	exit      *herdv1.ExitEvent
	stopTimer func() bool

	retire    retireReason // why the pool asked it to go, when it did
	diag      string       // the watchdog's diagnostics (pool_watchdog.go)
	wd        *watchdog    // its watchdog, once online (pool_watchdog.go)
	recycling bool         // a recycle of it is under way (pool_recycle.go)
	rss       uint64       // its resident memory at the last sample, bytes
}

// retireReason is why a pool asked a worker to go, for its exit's cause.
type retireReason int

const (
	retireNone    retireReason = iota
	retireReload               // replaced by a rolling reload
	retireRecycle              // recycled (pool_recycle.go)
)

// poolFork is a pool's hold on a worker it forks (forkConfig.pool): the
// worker's request limit for its handshake, and the pool's part of its
// exit's cause. A worker forked with one is not handed round-robin
// connections until the pool counts it ready (Worker.unready).
type poolFork struct {
	maxRequests uint64
	exit        func(w *Worker, ev *herdv1.ExitEvent)
	recycle     func(w *Worker, req *herdv1.RecycleRequest) *herdv1.RecycleResponse
	// inherit are the workers the slot lost since its last ready worker:
	// the worker takes the reuseport sockets they left (orphans,
	// primary_reuseport_orphan_unix.go).
	inherit []*Worker
	// released: no replacement will take the worker's sockets when it
	// dies (portTable.releaseOrphans). Guarded by the port table's lock.
	released bool
}

// NewPool returns a pool of p's workers; Start or Run starts it.
func NewPool(p *Primary, opts ...PoolOption) *Pool {
	var cfg poolConfig
	for _, o := range opts {
		o.applyToPool(&cfg)
	}
	cfg = cfg.withDefaults()
	return &Pool{
		p: p, cfg: cfg, log: p.log,
		done: make(chan struct{}), force: make(chan struct{}), stopDone: make(chan struct{}),
	}
}

// Start forks a worker into every slot and returns; the workers become
// ready later (Ready events). It fails when a fork fails.
func (pl *Pool) Start(ctx context.Context) error {
	pl.mu.Lock()
	if pl.started {
		pl.mu.Unlock()
		return ErrPoolStarted
	}
	pl.started = true
	slots := pl.addSlotsLocked(pl.cfg.size)
	pl.mu.Unlock()
	if err := pl.startAdmin(); err != nil { // admin.go
		pl.end(err)
		return err
	}
	pl.startWatchdog() // systemd's WATCHDOG=1 while healthy (pool_sdnotify.go)
	for _, s := range slots {
		if _, err := pl.forkInto(ctx, s, false); err != nil {
			pl.end(fmt.Errorf("herd: pool: start slot %d: %w", s.index, err))
			return err
		}
	}
	pl.startSampler()
	return nil
}

func (pl *Pool) addSlotsLocked(n int) []*slot {
	var added []*slot
	for range n {
		s := &slot{index: pl.nextSlot}
		s.restarts.Backoff = pl.cfg.backoff
		s.intensity = actor.Intensity{Max: pl.cfg.intensityMax, Window: pl.cfg.intensityWindow}
		s.recycles = actor.Intensity{Max: pl.cfg.intensityMax, Window: pl.cfg.intensityWindow}
		pl.nextSlot++
		pl.slots = append(pl.slots, s)
		added = append(added, s)
	}
	return added
}

// Done returns a channel closed when the pool has ended: stopped, or given
// up (Err says why), and every one of its workers has exited.
func (pl *Pool) Done() <-chan struct{} { return pl.done }

// Err returns why the pool ended: nil after a stop in which every worker
// exited after its disconnect, else the error. It is nil before the end.
func (pl *Pool) Err() error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.err
}

// Wait waits for the pool to end and returns Err, or ctx's error.
func (pl *Pool) Wait(ctx context.Context) error {
	select {
	case <-pl.done:
		return pl.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Size returns the number of slots.
func (pl *Pool) Size() int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.slots)
}

// Workers returns the workers in the slots, in slot order (a slot waiting
// for a restart, or failed, has none).
func (pl *Pool) Workers() []*Worker {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var ws []*Worker
	for _, s := range pl.slots {
		if s.cur != nil && s.cur.w != nil {
			ws = append(ws, s.cur.w)
		}
	}
	return ws
}

// ReadyWorkers returns the ready workers in the slots, in slot order.
func (pl *Pool) ReadyWorkers() []*Worker {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var ws []*Worker
	for _, s := range pl.slots {
		if s.cur != nil && s.cur.w != nil && s.cur.isReady && !s.cur.isDead {
			ws = append(ws, s.cur.w)
		}
	}
	return ws
}

// forkInto forks a worker for slot s: its worker, or a reload's
// replacement.
func (pl *Pool) forkInto(ctx context.Context, s *slot, replacement bool) (*member, error) {
	m := &member{slot: s, ready: make(chan struct{}), dead: make(chan struct{})}
	var tail *stderrTail
	if pl.cfg.tailLines > 0 {
		tail = newStderrTail(pl.cfg.tailLines)
	}
	pl.mu.Lock()
	if pl.stopping || s.removed {
		pl.mu.Unlock()
		return nil, ErrPoolStopped
	}
	var inherit []*Worker
	if replacement {
		s.next = m
	} else {
		s.cur = m
		inherit = slices.Clone(s.dead)
	}
	m.started = pl.cfg.clock.Now()
	pl.active.Add(1)
	size := len(pl.slots)
	pl.mu.Unlock()

	pf := &poolFork{
		maxRequests: pl.requestLimit(), // pool_recycle.go
		inherit:     inherit,
		exit:        func(w *Worker, ev *herdv1.ExitEvent) { pl.classifyExit(m, w, ev) },
		recycle:     func(w *Worker, req *herdv1.RecycleRequest) *herdv1.RecycleResponse { return pl.recycleAsked(m, req) },
	}
	opts := append(slices.Clip(pl.cfg.forkOpts), forkOptionFunc(func(c *forkConfig) {
		c.observe = func(w *Worker, procedure string, msg proto.Message) { pl.observe(m, w, procedure, msg) }
		c.tail = tail
		c.pool = pf
		c.poolSize = size // the workers' GOMAXPROCS rule (gomaxprocs.go)
	}))
	w, err := pl.p.Fork(ctx, opts...)
	pl.mu.Lock()
	if err != nil {
		if s.next == m {
			s.next = nil
		}
		if s.cur == m {
			s.cur = nil
		}
		pl.mu.Unlock()
		pl.active.Done()
		return nil, err
	}
	m.w = w
	if pl.draining {
		w.holdStopSignals() // pool_drain.go
	}
	if !m.isReady && !m.isDead {
		m.stopTimer = pl.cfg.clock.AfterFunc(pl.cfg.readyTimeout, func() { pl.readyTimeout(m) })
	}
	stopping := pl.stopping
	pl.mu.Unlock()
	if stopping {
		// The pool began to stop during the fork: this one goes too.
		go pl.stopMember(m, nil)
	}
	return m, nil
}

// observe sees m's events after the user's handlers, on m's drainer.
func (pl *Pool) observe(m *member, w *Worker, procedure string, msg proto.Message) {
	switch procedure {
	case eventOnlineProcedure:
		pl.startHeartbeats(m) // pool_watchdog.go
		if pl.cfg.readiness == ReadyOnOnline {
			pl.markReady(m, w, herdv1.ReadySource_READY_SOURCE_ONLINE)
		}
	case eventListeningProcedure:
		if pl.cfg.readiness == ReadyOnListening {
			pl.markReady(m, w, herdv1.ReadySource_READY_SOURCE_LISTENING)
		}
	case controlServiceReadyProcedure:
		pl.markReady(m, w, herdv1.ReadySource_READY_SOURCE_EXPLICIT)
	case eventExitProcedure:
		pl.exited(m, w, msg.(*herdv1.ExitEvent))
	}
	pl.notifyState() // systemd: READY=1 once all are ready, STATUS= on changes
}

// markReady makes m ready, once, and emits its Ready event.
func (pl *Pool) markReady(m *member, w *Worker, src herdv1.ReadySource) {
	pl.mu.Lock()
	if m.isReady || m.isDead {
		pl.mu.Unlock()
		return
	}
	m.isReady = true
	m.readyAt = pl.cfg.clock.Now()
	pl.everReady = true
	if m.stopTimer != nil {
		m.stopTimer()
	}
	slot := m.slot.index
	var dead []*Worker
	if m.slot.cur == m {
		// What the slot's dead workers left and this one did not take
		// goes.
		dead = takeDead(m.slot)
	}
	pl.mu.Unlock()
	pl.p.ports.releaseOrphans(dead)
	// Round-robin connections may go to it from now on.
	w.unready.Store(false)
	w.primary.ports.startRouting(w)
	w.emit(eventReadyProcedure, &herdv1.ReadyEvent{Worker: w.ident(), Slot: uint32(slot), Source: src})
	close(m.ready)
}

// readyTimeout kills a worker that did not become ready in time: a boot
// failure.
func (pl *Pool) readyTimeout(m *member) {
	pl.mu.Lock()
	expired := !m.isReady && !m.isDead && m.w != nil
	pl.mu.Unlock()
	if expired {
		pl.log.Warn("herd: pool: worker not ready in time; killing it", "worker", m.w.id, "timeout", pl.cfg.readyTimeout)
		m.w.readyExpired.Store(true)
		_ = m.w.Kill(syscall.SIGKILL)
	}
}

// exited handles the exit of m's worker, on its drainer, after the user's
// exit handlers: replace it, give up on its slot, or nothing.
func (pl *Pool) exited(m *member, w *Worker, ev *herdv1.ExitEvent) {
	defer pl.active.Done()
	// The reuseport sockets w left go, unless a replacement will take
	// them (then w joins s.dead).
	release := []*Worker{w}
	defer func() { pl.p.ports.releaseOrphans(release) }()
	pl.mu.Lock()
	m.isDead = true
	m.exit = ev
	m.slot.stat.lastExit = ev
	if m.stopTimer != nil {
		m.stopTimer()
	}
	pl.stopWatchdogLocked(m)
	close(m.dead)
	s := m.slot
	switch {
	case s.next == m:
		// A reload's replacement: the reload sees m.dead.
		s.next = nil
		pl.mu.Unlock()
		return
	case s.cur != m:
		pl.mu.Unlock() // replaced by a reload already
		return
	}
	s.cur = nil
	if m.retiring || pl.stopping || s.removed {
		release = append(release, takeDead(s)...)
		pl.mu.Unlock()
		return
	}
	failure := ev.GetCode() != 0 || ev.GetSignal() != ""
	restart := pl.cfg.policy == RestartPermanent || (pl.cfg.policy == RestartTransient && failure)
	if w.asked.Load() || !restart {
		// The primary asked it to go, or the policy says it may: the slot
		// goes with it.
		release = append(release, takeDead(s)...)
		pl.removeSlotLocked(s)
		pl.mu.Unlock()
		return
	}
	if s.next != nil {
		release = append(release, takeDead(s)...)
		pl.mu.Unlock() // a reload's replacement is booting: it takes the slot
		return
	}
	boot := !m.isReady
	if boot && !pl.everReady {
		pl.bootFails++
		if pl.bootFails >= pl.cfg.bootFailures {
			release = append(release, takeDead(s)...)
			err := &BootError{Failures: pl.bootFails, Slot: s.index, Worker: w.id, Code: int(ev.GetCode()),
				Signal: ev.GetSignal(), Cause: ev.GetCause(), StderrTail: ev.GetStderrTail()}
			pl.mu.Unlock()
			pl.end(err)
			return
		}
	}
	now := pl.cfg.clock.Now()
	if !s.intensity.Allow(now) {
		s.failed = true
		release = append(release, takeDead(s)...)
		all := pl.allFailedLocked()
		pl.mu.Unlock()
		reason := fmt.Sprintf("more than %d restarts within %v", pl.cfg.intensityMax, pl.cfg.intensityWindow)
		w.emit(eventSlotFailedProcedure, &herdv1.SlotFailedEvent{Slot: uint32(s.index), Last: w.ident(), Reason: reason})
		pl.log.Error("herd: pool: slot failed", "slot", s.index, "reason", reason)
		if all {
			pl.end(fmt.Errorf("%w: last, slot %d: %s; its last worker %d: %s", ErrAllSlotsFailed, s.index, reason, w.id, describeExit(ev)))
		}
		return
	}
	delay := s.restarts.Next(now.Sub(m.started))
	if pl.cfg.upLongEnough(m, now) {
		// PM2's min_uptime: a worker that served for a while and died is
		// replaced at once; the backoff is for crash loops. The restart
		// still counts (attempt, intensity).
		delay = 0
	}
	attempt := s.restarts.Attempt()
	s.dead = append(s.dead, w) // its sockets wait for the replacement
	release = nil
	pl.mu.Unlock()
	w.emit(eventRestartScheduledProcedure, &herdv1.RestartScheduledEvent{
		Slot: uint32(s.index), Previous: w.ident(), Attempt: uint32(attempt),
		Delay: durationpb.New(delay), BootFailure: boot,
	})
	pl.scheduleRestart(s, delay)
}

// scheduleRestart forks into s after delay, unless the pool stops first.
func (pl *Pool) scheduleRestart(s *slot, delay time.Duration) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.stopping || s.removed {
		return
	}
	s.cancel = pl.cfg.clock.AfterFunc(delay, func() { pl.restart(s) })
}

// restart forks the replacement of s's worker.
func (pl *Pool) restart(s *slot) {
	pl.mu.Lock()
	s.cancel = nil
	if pl.stopping || s.removed || s.cur != nil || s.next != nil || s.failed {
		// A reload's replacement may be booting for the slot: it takes
		// the slot's place.
		dead := takeDead(s)
		pl.mu.Unlock()
		pl.p.ports.releaseOrphans(dead)
		return
	}
	s.stat.restarts++
	pl.mu.Unlock()
	if _, err := pl.forkInto(context.Background(), s, false); err != nil && !errors.Is(err, ErrPoolStopped) {
		pl.forkFailed(s, err)
	}
}

// forkFailed counts a failed fork as a boot failure of s and tries again
// after the backoff.
func (pl *Pool) forkFailed(s *slot, err error) {
	pl.log.Error("herd: pool: fork failed", "slot", s.index, "error", err)
	pl.mu.Lock()
	if !pl.everReady {
		pl.bootFails++
		if pl.bootFails >= pl.cfg.bootFailures {
			pl.mu.Unlock()
			pl.end(&BootError{Failures: pl.bootFails, Slot: s.index, Err: err})
			return
		}
	}
	if !s.intensity.Allow(pl.cfg.clock.Now()) {
		s.failed = true
		all := pl.allFailedLocked()
		pl.mu.Unlock()
		if all {
			pl.end(fmt.Errorf("%w: last, slot %d: fork: %w", ErrAllSlotsFailed, s.index, err))
		}
		return
	}
	delay := s.restarts.Next(0)
	pl.mu.Unlock()
	pl.scheduleRestart(s, delay)
}

func (pl *Pool) allFailedLocked() bool {
	for _, s := range pl.slots {
		if !s.failed {
			return false
		}
	}
	return len(pl.slots) > 0
}

// takeDead empties s.dead and returns what it held. Called with pl.mu held.
func takeDead(s *slot) []*Worker {
	dead := s.dead
	s.dead = nil
	return dead
}

func (pl *Pool) removeSlotLocked(s *slot) {
	s.removed = true
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	pl.slots = slices.DeleteFunc(pl.slots, func(x *slot) bool { return x == s })
}

// describeExit is an exit in words, for errors.
func describeExit(ev *herdv1.ExitEvent) string {
	var s string
	if ev.GetSignal() != "" {
		s = fmt.Sprintf("killed by %s (%s)", ev.GetSignal(), ev.GetCause())
	} else {
		s = fmt.Sprintf("exited with code %d (%s)", ev.GetCode(), ev.GetCause())
	}
	if t := ev.GetStderrTail(); t != "" {
		s += "; its stderr ended with:\n" + t
	}
	return s
}

// end ends the pool with err (nil for a plain stop): every worker left is
// stopped, and Done closes once they have all exited.
func (pl *Pool) end(err error) {
	pl.mu.Lock()
	if pl.ended {
		pl.mu.Unlock()
		return
	}
	pl.ended = true
	pl.err = err
	pl.mu.Unlock()
	if err != nil {
		pl.log.Error("herd: pool ended", "error", err)
	}
	go func() {
		_ = pl.stop(context.Background(), false)
		pl.active.Wait()
		pl.stopWatchdog()
		pl.stopAdmin() // admin.go
		close(pl.done)
	}()
}
