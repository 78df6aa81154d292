package runtime

import (
	"io"
	"log/slog"
	"os"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/actor"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// settings are what the primary applies to every fork, Node's
// cluster.settings.
type settings struct {
	exec       string
	args       []string
	argsSet    bool
	env        []string
	dir        string
	silent     bool
	stdout     io.Writer
	stderr     io.Writer
	extraFiles []*os.File
	credential *credential
	endpoint   endpointConfig
	hello      time.Duration
	// handlerGrace bounds how long a dead worker's exit event waits for its
	// handlers still running.
	handlerGrace time.Duration
	// policy is the cluster's scheduling policy; handoffWindow bounds
	// round-robin connections handed to a worker's listener and not yet
	// accepted by its server.
	policy        SchedulingPolicy
	handoffWindow int
	// handoffNoRescue: WithHandoffWithoutRescue.
	handoffNoRescue bool
	// trust limits what workers may ask of the primary (trust.go).
	trust trustSettings
	// signalGrace is how long a worker's stop signal waits for the
	// primary's own stop (primary_signal.go).
	signalGrace time.Duration
	// subreaper makes the primary reap its workers' orphans (reaper.go).
	subreaper bool
	// prefixOutput prefixes workers' output lines (logging.go).
	prefixOutput bool
	// workerProcs is the workers' GOMAXPROCS: -1 herd's default, 0 Go's,
	// n > 0 n (gomaxprocs.go).
	workerProcs int
}

// PrimaryOption configures a Primary (NewPrimary) or the settings of later
// forks (Primary.Setup, Node's setupPrimary). Settings are cumulative: a
// later call changes only what it names.
type PrimaryOption interface {
	applyToPrimary(*settings)
}

type primaryOptionFunc func(*settings)

func (f primaryOptionFunc) applyToPrimary(s *settings) { f(s) }

// WithExec sets the program workers run and its arguments (Node's exec and
// args). The default is this program (os.Executable) with this process's
// arguments.
func WithExec(path string, args ...string) PrimaryOption {
	return primaryOptionFunc(func(s *settings) {
		s.exec = path
		s.args = append([]string(nil), args...)
		s.argsSet = true
	})
}

// WithArgs sets the workers' arguments, keeping the program.
func WithArgs(args ...string) PrimaryOption {
	return primaryOptionFunc(func(s *settings) {
		s.args = append([]string(nil), args...)
		s.argsSet = true
	})
}

// WithEnv adds "KEY=value" entries to every worker's environment, on top of
// the primary's own. The worker-ID sentinel cannot be set this way.
func WithEnv(kv ...string) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.env = append(s.env, kv...) })
}

// WithDir sets the workers' working directory (Node's cwd).
func WithDir(dir string) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.dir = dir })
}

// WithSilent gives each worker pipes for stdout and stderr instead of the
// primary's own (Node's silent); read them with Worker.Stdout and
// Worker.Stderr.
func WithSilent(silent bool) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.silent = silent })
}

// WithOutput sets where workers' stdout and stderr go when not silent; the
// default is the primary's own stdout and stderr.
func WithOutput(stdout, stderr io.Writer) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.stdout, s.stderr = stdout, stderr })
}

// WithExtraFiles passes open files to every worker as descriptors 4, 5, ...
// (descriptor 3 is the link).
func WithExtraFiles(files ...*os.File) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.extraFiles = append([]*os.File(nil), files...) })
}

// WithCredential runs workers as uid and gid (Node's uid and gid), for
// privilege separation: a primary started as root can bind port 443 and run
// its workers unprivileged.
func WithCredential(uid, gid uint32) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.credential = &credential{uid: uid, gid: gid} })
}

// DefaultHelloTimeout is how long a forked worker has, by default, to
// complete its handshake (Self.Start). It is generous, like systemd's start
// timeouts rather than PM2's 3 s listen_timeout, because a worker may load a
// lot before it calls Start; what it guards against is a worker that never
// will (a wrong binary, a program that forgot Start, a deadlock in init),
// which would otherwise stay in state none forever.
const DefaultHelloTimeout = 30 * time.Second

// WithHelloTimeout bounds how long a forked worker has to complete its
// handshake before the primary kills it with SIGKILL, reporting an error
// event (CodeDeadlineExceeded) and an exit event with cause
// EXIT_CAUSE_HELLO_TIMEOUT. Zero restores DefaultHelloTimeout; a negative
// duration waits forever, as Node does.
func WithHelloTimeout(d time.Duration) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.hello = d })
}

// DefaultHandlerGrace is how long, by default, a worker's disconnect and
// exit events wait, once the worker has exited, for handlers of its messages
// that are still running (see WithHandlerGrace).
const DefaultHandlerGrace = 10 * time.Second

// WithHandlerGrace bounds how long a worker's disconnect and exit events
// wait for the primary's handlers of that worker's messages that are still
// running when the worker has exited and its link has been read to the end.
// At that point the contexts of those handlers end (as an HTTP handler's
// does when its client goes away); a handler that ignores its context then
// holds the events, Worker.Wait and Primary.Wait for at most d, after which
// the events are delivered anyway, possibly while the handler still runs,
// and the worker's messages not yet handled are dropped (their files
// closed). Zero restores DefaultHandlerGrace.
func WithHandlerGrace(d time.Duration) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.handlerGrace = d })
}

// LinkOption configures both ends of links: it applies to NewPrimary and
// NewSelf alike.
type LinkOption interface {
	PrimaryOption
	SelfOption
}

type linkOption func(*endpointConfig)

func (f linkOption) applyToPrimary(s *settings) { f(&s.endpoint) }
func (f linkOption) applyToSelf(s *selfConfig)  { f(&s.endpoint) }

// WithMaxFrameSize sets the largest frame a link sends or accepts (default
// 16 MiB). A larger incoming frame is a protocol error that closes the link;
// a larger outgoing message fails its call with CodeResourceExhausted.
func WithMaxFrameSize(n int) LinkOption {
	return linkOption(func(c *endpointConfig) { c.maxFrame = n })
}

// WithMailboxCapacity sets how many user messages a link end holds,
// received and not yet handled (default 8192). It is granted to the other
// end as credit: beyond it the other end's senders wait (backpressure),
// while control traffic (replies, hand-offs, disconnects) still flows.
//
// The count also sets how far a stream of small one-way messages runs
// ahead of its handler: credit comes back in quarters of it, so a small
// window makes the sender stop and wait often, and both ends read and
// write in small batches. With 1024, a one-way flood of small messages
// between two processes cost each end about a third more CPU per message
// and ran at half the rate. The memory it allows stays bounded by
// WithMailboxBytes too (the ring that holds the queue grows only while
// messages wait, 80 bytes a message).
func WithMailboxCapacity(n int) LinkOption {
	return linkOption(func(c *endpointConfig) { c.mailboxCap = n })
}

// WithMaxQueuedFiles sets how many received files (descriptors) a link end
// may hold in its mailbox, waiting for their handlers. A message whose
// files would take it past n is refused at once with CodeResourceExhausted
// (an error event on this side, the error to the caller), its files
// closed; the link goes on. Default 1024, four frames' worth: a peer cannot
// make this process hold more than that, beyond what running handlers hold
// or have taken.
func WithMaxQueuedFiles(n int) LinkOption {
	return linkOption(func(c *endpointConfig) { c.maxQueuedFDs = n })
}

// WithMailboxBytes sets how many bytes of user messages a link end holds,
// received and not yet handled (default DefaultMailboxBytes, 64 MiB),
// counted as encoded frames. Like WithMailboxCapacity it is granted to the
// other end as credit, so it bounds what a worker can make the primary
// hold for it (and the primary a worker). A single message larger than
// this is still delivered, when nothing else is held.
func WithMailboxBytes(n int) LinkOption {
	return linkOption(func(c *endpointConfig) { c.mailboxBytes = n })
}

// WithCallSpin sets how long a caller waiting for its response reads the
// link itself, before it sleeps until the link's reader wakes it (default
// 20 µs; the environment variable HERD_CALL_SPIN_US, in microseconds,
// changes the default; 0 turns it off). A response that comes within it
// is taken off the socket at once: on a machine whose idle CPUs sleep
// deeply (a virtual machine), waking one is most of a quick round trip
// (measured on 2 vCPUs: 26-28 µs without, 18 µs with). Only one caller per
// link at a time reads, only while the link's reader is idle, in a process
// running more than one P (GOMAXPROCS), yielding its P to any goroutine
// that is runnable; a caller whose responses keep taking longer stops
// trying, for up to 64 calls at a time, so a slow service pays little
// for it.
func WithCallSpin(d time.Duration) LinkOption {
	return linkOption(func(c *endpointConfig) { c.callSpin, c.callSpinSet = max(d, 0), true })
}

// WithLogger sets the logger for runtime diagnostics. Default slog.Default().
func WithLogger(l *slog.Logger) LinkOption {
	return linkOption(func(c *endpointConfig) { c.logger = l })
}

// WithCrashOnPanic makes a panic in a handler crash the process ("let it
// crash") instead of failing only that call with CodeInternal.
func WithCrashOnPanic() LinkOption {
	return linkOption(func(c *endpointConfig) { c.crashOnPanic = true })
}

// credential is the user and group workers run as.
type credential struct{ uid, gid uint32 }

// ForkOption configures one fork.
type ForkOption interface {
	applyToFork(*forkConfig)
}

type forkConfig struct {
	env      []string
	register []func(Registrar) error
	// observe, set by a Pool, sees every event of the worker after its
	// handlers, and its Ready call (pool.go).
	observe func(w *Worker, procedure string, msg proto.Message)
	// tail, set by a Pool, keeps the last lines of the worker's stderr
	// (stderr_tail.go).
	tail *stderrTail
	// pool, set by a Pool, is the pool's hold on the worker (pool.go).
	pool *poolFork
	// poolSize, set by a Pool, is its size when it forked the worker
	// (gomaxprocs.go).
	poolSize int
}

type forkOptionFunc func(*forkConfig)

func (f forkOptionFunc) applyToFork(c *forkConfig) { f(c) }

// WithForkEnv adds "KEY=value" entries to this worker's environment only
// (Node's fork(env)). The worker-ID sentinel cannot be set this way.
func WithForkEnv(kv ...string) ForkOption {
	return forkOptionFunc(func(c *forkConfig) { c.env = append(c.env, kv...) })
}

// WithRegister registers handlers for this worker only, before it starts,
// so that even its fork event reaches them. Register the generated
// EventService handler this way to subscribe to one worker's events.
func WithRegister(fn func(Registrar) error) ForkOption {
	return forkOptionFunc(func(c *forkConfig) { c.register = append(c.register, fn) })
}

func (s settings) withDefaults() settings {
	s.endpoint = s.endpoint.withDefaults()
	if s.hello == 0 {
		s.hello = DefaultHelloTimeout
	}
	if s.handlerGrace <= 0 {
		s.handlerGrace = DefaultHandlerGrace
	}
	return s
}

// The defaults of the link options, shared with the layers below rather
// than copied.
const (
	// defaultMaxFrame is WithMaxFrameSize's: the link's own, 16 MiB.
	defaultMaxFrame = wire.DefaultMaxFrameSize
	// defaultMailboxCap is WithMailboxCapacity's (see there why it is
	// larger than the actor mailbox's default).
	defaultMailboxCap = 8 * actor.DefaultCapacity
	// defaultMaxQueuedFDs is WithMaxQueuedFiles's.
	defaultMaxQueuedFDs = 1024
)

func (c endpointConfig) withDefaults() endpointConfig {
	if c.maxFrame <= 0 {
		c.maxFrame = defaultMaxFrame
	}
	if c.mailboxCap <= 0 {
		c.mailboxCap = defaultMailboxCap
	}
	if c.mailboxBytes <= 0 {
		c.mailboxBytes = DefaultMailboxBytes
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.maxQueuedFDs <= 0 {
		c.maxQueuedFDs = defaultMaxQueuedFDs
	}
	return c
}
