// Package runtime is herd's runtime: Node.js's cluster module for Go, with
// typed messages.
//
// # Processes
//
// A program runs as the primary or as a worker; IsPrimary and IsWorker tell
// which. The primary (NewPrimary) forks workers with Fork: by default the
// same executable with the same arguments, started with an environment
// sentinel carrying the worker's ID (EnvWorkerID, the analogue of Node's
// NODE_UNIQUE_ID) and one end of a unix socketpair as descriptor 3. A worker
// reads and removes the sentinel when this package initialises, builds its
// Self with NewSelf, registers the services it serves, and calls Start: the
// handshake carries the protocol version and makes the worker online.
//
// Worker IDs are 1, 2, 3, ... and never reused. A worker moves through the
// states none, online, listening, disconnected and dead. Disconnect is
// graceful: the worker runs its drain hooks (Self.OnDisconnect), closes its
// link and exits; Kill only signals. Worker.ExitedAfterDisconnect follows
// Node's exitedAfterDisconnect.
//
// No worker outlives its primary. When its link ends without a disconnect,
// a worker runs its drain hooks for a short time (WithOrphanTimeout) and
// exits. On Linux the kernel also tells it (PR_SET_PDEATHSIG, armed on the
// worker's main thread when this package initialises), so even a worker
// whose goroutines are all busy runs its drain hooks and goes when the
// primary is killed with SIGKILL.
//
// SIGINT and SIGTERM make a started worker stop gracefully instead of dying:
// Ctrl-C in a terminal, kill -- -PGID, systemd's KillMode=control-group and
// docker stop signal every process of the group, workers included. The
// worker tells its primary and keeps serving; the primary's own graceful
// stop (Primary.Disconnect, called from its signal handler) then drains it,
// in the primary's order and with its deadline. A worker signalled alone is
// disconnected by the primary after a grace (WithWorkerSignalGrace). Either
// way the drain hooks run, requests in flight finish, the worker exits with
// status 0 and ExitedAfterDisconnect is true. The signal of Worker.Kill
// still kills. WithStopSignals() leaves these signals to the program.
//
// # Messages
//
// Messages between the primary and a worker are protobuf messages, defined
// as ordinary proto services and generated into typed clients and handlers
// by protoc-gen-go-herd. A service is served by whichever side registers it
// (the Primary, a Worker handle or the worker's Self; each is a Registrar)
// and called through a ClientConn (a Worker handle calls that worker; Self
// calls the primary). Every method can be called as request/response, which
// honours the context's deadline and cancellation and fails with a typed
// *Error carrying a Code, or as fire-and-forget, Node's send, which writes
// no reply. Primary.Broadcast sends to every worker through a generated
// broadcast client, fire-and-forget only. A fire-and-forget message the
// other side cannot dispatch is an error event on both sides. Files,
// connections and listeners travel with a call (WithFiles,
// FilesFromContext, TakeFiles) and with a reply: a handler registered with
// NewResponseHandler returns a *Response, with files attached
// (Response.AttachFiles, received with WithResponseFiles) and a step that
// runs once the reply is written (Response.AfterReply).
//
// # Interceptors and metadata
//
// Interceptors wrap calls on the calling side, the handling side or both,
// as connect-go's do: WithInterceptors on a client, a call, a handler, or
// link-wide on the Primary and on Self. Per-call metadata, string keys and
// values, travels with a request (AppendToOutgoingContext, WithMetadata)
// and is read in the handler with MetadataFromContext; a call carries at
// most MaxMetadataEntries entries. Worker.Stats and Self.Stats expose each
// link's counters for metrics.
//
// # Actors
//
// Each end of a link is an actor: the link's reader decodes each request
// and posts it to a bounded mailbox, and one goroutine handles the messages
// one at a time, in arrival order, so a handler needs no lock for
// per-worker state. Handlers for different workers run concurrently. (A
// request that finds the mailbox idle and empty is handled on the reader
// goroutine itself, which saves a goroutine hand-off per round trip; the
// reading passes to a new goroutine as soon as such a handler waits for the
// other side, or after it has run for a millisecond, so the guarantees
// below hold the same.)
// Responses to a side's own calls do not wait in its mailbox, so a handler
// may call the other side and wait for the answer. A caller waiting for its
// response, in a process running more than one P, first reads the link
// itself for a short while (WithCallSpin, 20 µs; yielding its P to any
// goroutine that is runnable) when the link's reader is idle, so that
// a quick reply is taken off the socket without waiting for a sleeping CPU
// to wake up; a caller whose replies keep coming later than that stops
// trying, for up to 64 calls at a time. A mailbox is bounded in
// messages (WithMailboxCapacity) and in bytes (WithMailboxBytes), and the
// bound is enforced by credit-based flow control: the other side sends user
// messages only within the credit this side granted, so when the mailbox is
// full the sender waits (a call until its deadline, a fire-and-forget send
// until its context ends) while the link's reader keeps reading. Control
// traffic (replies, connection hand-offs, disconnect requests) is never
// stuck behind user messages, in either direction: the runtime's own
// requests (Disconnect, Listen, ...) run on a second goroutine of that end,
// so they do not wait for a user handler that is running either (a
// worker's drain hooks run while its handlers do). Nothing is dropped
// silently.
//
// # Events
//
// Cluster events (fork, online, listening, disconnect, exit, error) are the
// messages of herd.v1.EventService. Register a handler for it (the generated
// herdv1herd.RegisterEventServiceHandler; each method returns only an
// error, such as Online(ctx, *herdv1.OnlineEvent) error, and a handler
// embeds UnimplementedEventServiceHandler for the events it ignores) on the
// Primary for every worker's
// events, or for one worker with WithRegister at Fork. A worker's events go
// through its mailbox like its messages, so they are handled in order:
// fork, online, everything the worker sent, disconnect, exit.
//
// Workers share server ports as in Node: Listen and ListenPacket, called in
// a worker, get their socket from the primary, which keeps one handle per
// (network, address, port, descriptor, index) key and schedules its
// connections round-robin (the primary accepts and hands each connection's
// descriptor to a worker), shared (every worker accepts from the primary's
// socket) or reuseport (one SO_REUSEPORT socket per worker). Outside a
// cluster they are net.Listen and net.ListenPacket.
//
// # Supervision
//
// A Pool (NewPool) keeps N workers of a primary alive: a worker that exits
// without a disconnect the primary asked for is replaced in its slot, at
// once when it had been ready for a minimum uptime (1 s, WithMinUptime),
// else after an exponential backoff, within a restart intensity limit, as
// the pool's RestartPolicy says; workers that die before they are ready end the pool
// with a *BootError naming the cause and the worker's last stderr lines.
// Reload replaces every worker one slot at a time, each replacement ready
// before the worker it replaces is disconnected; Scale changes the number
// of slots; Stop stops gracefully (disconnect, SIGTERM, SIGKILL); Run does
// all of it on the primary's signals (SIGHUP reloads, SIGINT and SIGTERM
// stop). Round-robin connections go to ready workers only. A worker is
// recycled by the same rolling path after its request limit
// (WithRecycleRequests, Self.RequestDone), above an RSS limit
// (WithRecycleRSS) or when it asks (Self.Recycle); a watchdog
// (WithWatchdog) sends heartbeats that the worker answers on its user lane
// and kills a hung worker after a goroutine dump. Exit events carry a typed
// cause (OOM, watchdog, boot failure, recycled, reloaded among them). Its
// events (Ready, RestartScheduled, SlotFailed, ReloadStarted,
// ReloadFinished, ReloadAborted, Recycled) reach the EventService handler
// in order with the workers' own.
//
// # Operations
//
// Under systemd (NOTIFY_SOCKET) a pool says READY=1 once every slot has a
// ready worker, a one-line STATUS= on every change, RELOADING=1 and READY=1
// around a reload, STOPPING=1 when it stops, and WATCHDOG=1 every half of
// WATCHDOG_USEC while no slot has failed; Notifier speaks the same protocol
// for a program's own notifications. A primary that is PID 1 (a container)
// reaps the orphans of its workers, as WithSubreaper makes it do elsewhere.
// WithDrainDelay starts a graceful stop with a drain for load balancers
// that route by readiness (Kubernetes): the pool reports not ready
// (Serving, ReadinessHandler: 503) and serves on for the delay, then
// disconnects its workers.
//
// Pool.Status is a snapshot of the pool for operators (per slot: worker,
// PID, state, readiness, uptime, restarts, last exit, RSS, CPU time,
// connections, mailbox depth). WithAdminSocket (or HERD_ADMIN_SOCKET in
// the primary's environment) serves herd.v1.AdminService on a unix socket:
// status, reload, scale, kill, disconnect, recycle and the event stream,
// what cmd/herdctl calls. Each connection is a herd link, its peer's user
// checked (SO_PEERCRED); DialAdmin is the client side.
//
// # Trust
//
// The primary trusts no worker: a worker listens only on descriptors the
// primary declared shareable (WithShareableFDs, systemd's LISTEN_FDS) and
// has unix sockets only in the directories it allows (WithUnixSocketDirs,
// WithUnixModeLimit); anything else is refused with ErrFDNotShareable,
// ErrUnixPathNotAllowed or ErrUnixModeNotAllowed and an error event naming
// the worker. Workers run as another user (WithCredential) are made
// non-dumpable (WithNonDumpable). SECURITY.md in the repository states the
// threat model and the known gaps.
package runtime
