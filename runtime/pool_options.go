package runtime

import (
	"math/rand/v2"
	"time"

	"github.com/herd-go/herd/actor"
)

// RestartPolicy says which exits of a pool's worker the pool answers with a
// replacement in the same slot (Erlang/OTP's child restart types). An exit
// that follows a disconnect the primary asked for (Worker.Disconnect,
// Primary.Disconnect, or the pool's own scale-down, reload and stop) is never
// answered with a replacement.
type RestartPolicy int

const (
	// RestartPermanent replaces every worker that exits (the default).
	RestartPermanent RestartPolicy = iota
	// RestartTransient replaces a worker that failed: a non-zero exit
	// status or a signal. A worker that exits with status 0 leaves its
	// slot, which the pool then drops.
	RestartTransient
	// RestartTemporary never replaces a worker; its slot is dropped.
	RestartTemporary
)

// Readiness says when a pool counts a new worker as ready: started for
// good (the end of a boot), able to take the place of another in a rolling
// reload. A worker that calls Self.Ready is ready then, whatever the rule.
type Readiness int

const (
	// ReadyOnListening: at the worker's first listening event (the
	// default; for workers that serve ports).
	ReadyOnListening Readiness = iota
	// ReadyOnOnline: at the worker's online event (for job workers that
	// never listen).
	ReadyOnOnline
	// ReadyExplicit: only when the worker calls Self.Ready.
	ReadyExplicit
)

// The pool's defaults (see ../shared/reference/supervision.md for where
// each comes from).
const (
	DefaultRestartInitial    = 100 * time.Millisecond
	DefaultRestartMultiplier = 1.5
	DefaultRestartMax        = 30 * time.Second
	DefaultRestartJitter     = 0.2
	DefaultRestartResetAfter = 30 * time.Second
	DefaultIntensityMax      = 10
	DefaultIntensityWindow   = 60 * time.Second
	DefaultBootFailures      = 3
	DefaultReadyTimeout      = 60 * time.Second
	DefaultGracefulTimeout   = 30 * time.Second
	DefaultTermTimeout       = 5 * time.Second
	DefaultStderrTailLines   = 10
	DefaultMinUptime         = time.Second
)

// DefaultRestartBackoff returns the pool's default restart backoff: 100 ms,
// x1.5 per consecutive restart, capped at 30 s, +-20 % jitter, reset after
// 30 s of uptime.
func DefaultRestartBackoff() actor.Backoff {
	return actor.Backoff{
		Initial:    DefaultRestartInitial,
		Multiplier: DefaultRestartMultiplier,
		Max:        DefaultRestartMax,
		Jitter:     DefaultRestartJitter,
		ResetAfter: DefaultRestartResetAfter,
	}
}

// PoolOption configures a Pool.
type PoolOption interface {
	applyToPool(*poolConfig)
}

type poolOptionFunc func(*poolConfig)

func (f poolOptionFunc) applyToPool(c *poolConfig) { f(c) }

type poolConfig struct {
	size            int
	policy          RestartPolicy
	readiness       Readiness
	backoff         actor.Backoff
	backoffSet      bool
	minUptime       time.Duration // < 0: every restart waits the backoff
	intensityMax    int
	intensityWindow time.Duration
	bootFailures    int
	readyTimeout    time.Duration
	gracefulTimeout time.Duration
	termTimeout     time.Duration
	drainDelay      time.Duration
	tailLines       int
	forkOpts        []ForkOption
	clock           clock
	admin           *adminConfig // WithAdminSocket (admin.go)

	// The watchdog (pool_watchdog.go).
	watchdog    time.Duration
	watchdogSet bool
	dumpWait    time.Duration
	dumpBytes   int
	dumpSet     bool

	// Recycling (pool_recycle.go).
	maxRequests   uint64
	requestJitter float64
	rand          func() float64 // in [0, 1), for the request limits' jitter
	rssLimit      uint64
	rssInterval   time.Duration
	rss           func(pid int) (uint64, error) // samples a worker's RSS

	heartbeatHook func(worker, seq uint64) // tests: a heartbeat was answered
}

// WithPoolSize sets the number of slots, each holding one worker. The
// default is the number of CPUs the process may use: GOMAXPROCS, and no
// more than a cgroup v2 CPU quota allows (DefaultPoolSize).
func WithPoolSize(n int) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.size = n })
}

// WithRestartPolicy sets which exits are answered with a replacement.
// Default RestartPermanent.
func WithRestartPolicy(p RestartPolicy) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.policy = p })
}

// WithReadiness sets when a worker counts as ready. Default
// ReadyOnListening.
func WithReadiness(r Readiness) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.readiness = r })
}

// WithRestartBackoff sets the delays before replacements of workers that
// died before their minimum uptime (WithMinUptime): the n-th consecutive
// restart of a slot waits b.Next(n-1), and a worker that ran for
// b.ResetAfter starts the sequence again. Zero fields take actor's
// defaults; DefaultRestartBackoff is the pool's default.
func WithRestartBackoff(b actor.Backoff) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.backoff, c.backoffSet = b, true })
}

// WithMinUptime sets how long a worker must have been ready for its death
// to be replaced at once, with no backoff delay (PM2's min_uptime): a
// worker that served that long and died is a fault of its own, not a crash
// loop. A worker that dies sooner, or before it is ready, is replaced after
// the backoff (WithRestartBackoff). Either way the restart counts toward
// the backoff's sequence and the restart intensity (WithRestartIntensity),
// which still bounds a slot whose workers die after each minimum uptime.
// Default 1 s (DefaultMinUptime); a negative d makes every restart wait
// the backoff.
func WithMinUptime(d time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.minUptime = d })
}

// upLongEnough reports whether m, dead at now, had been ready for the
// minimum uptime. Called with the pool's lock held.
func (c *poolConfig) upLongEnough(m *member, now time.Time) bool {
	return c.minUptime >= 0 && m.isReady && now.Sub(m.readyAt) >= c.minUptime
}

// WithRestartIntensity sets how many restarts a slot may have within
// window: one more marks the slot failed (a SlotFailed event; no more
// restarts). Default 10 in 60 s.
func WithRestartIntensity(max int, window time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.intensityMax, c.intensityWindow = max, window })
}

// WithBootFailures sets how many consecutive boot failures (a worker that
// dies before it is ready), with no worker of the pool ever ready, end the
// pool with a *BootError. Default 3.
func WithBootFailures(n int) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.bootFailures = n })
}

// WithReadyTimeout sets how long a new worker has to become ready; after
// it, the pool kills it (exit cause EXIT_CAUSE_READY_TIMEOUT), which is a
// boot failure. Default 60 s.
func WithReadyTimeout(d time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.readyTimeout = d })
}

// WithStopTimeouts sets the graceful stop's steps: a disconnect, graceful
// to drain, then SIGTERM, term more, then SIGKILL. The graceful timeout
// also bounds the disconnect of a worker replaced by a reload or removed by
// a scale-down (SIGKILL at its end). Defaults 30 s and 5 s.
func WithStopTimeouts(graceful, term time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.gracefulTimeout, c.termTimeout = graceful, term })
}

// WithStderrTail sets how many of the last lines of each worker's stderr
// the pool keeps (bounded to 4 KiB) for exit events and boot errors; the
// output still reaches the primary's stderr. Default 10; negative keeps
// none (the worker then writes to the primary's stderr directly). A
// primary set up WithSilent keeps none either: its user reads the pipes.
func WithStderrTail(lines int) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.tailLines = lines })
}

// WithPoolForkOptions adds options to every fork of the pool.
func WithPoolForkOptions(opts ...ForkOption) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.forkOpts = append(c.forkOpts, opts...) })
}

func (c poolConfig) withDefaults() poolConfig {
	if c.size <= 0 {
		c.size = DefaultPoolSize()
	}
	if !c.backoffSet {
		c.backoff = DefaultRestartBackoff()
	}
	if c.minUptime == 0 {
		c.minUptime = DefaultMinUptime
	}
	if c.intensityMax <= 0 {
		c.intensityMax = DefaultIntensityMax
	}
	if c.intensityWindow <= 0 {
		c.intensityWindow = DefaultIntensityWindow
	}
	if c.bootFailures <= 0 {
		c.bootFailures = DefaultBootFailures
	}
	if c.readyTimeout <= 0 {
		c.readyTimeout = DefaultReadyTimeout
	}
	if c.gracefulTimeout <= 0 {
		c.gracefulTimeout = DefaultGracefulTimeout
	}
	if c.termTimeout <= 0 {
		c.termTimeout = DefaultTermTimeout
	}
	if c.tailLines == 0 {
		c.tailLines = DefaultStderrTailLines
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if !c.watchdogSet {
		c.watchdog = DefaultWatchdogTimeout
	}
	if !c.dumpSet {
		c.dumpWait, c.dumpBytes = DefaultWatchdogDumpWait, DefaultWatchdogDumpBytes
	}
	if c.dumpBytes <= 0 {
		c.dumpBytes = DefaultWatchdogDumpBytes
	}
	c.requestJitter = max(c.requestJitter, MinRecycleJitter)
	if c.rand == nil {
		c.rand = rand.Float64
	}
	if c.rssInterval <= 0 {
		c.rssInterval = DefaultRSSSampleInterval
	}
	if c.rss == nil {
		c.rss = processRSS
	}
	return c
}

// clock is the pool's time: tests inject one to check schedules without
// sleeping.
type clock interface {
	Now() time.Time
	// AfterFunc runs f once d has passed and returns a function that
	// cancels it (reporting whether it did).
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}
