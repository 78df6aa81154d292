package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// SchedulingPolicy is how the connections of an address shared by several
// workers reach them (Node's cluster.schedulingPolicy, plus reuseport).
type SchedulingPolicy int

// The scheduling policies.
const (
	// SchedDefault uses the cluster's policy: the primary's
	// WithSchedulingPolicy, else HERD_SCHED_POLICY, else SchedRoundRobin.
	SchedDefault SchedulingPolicy = iota
	// SchedRoundRobin: the primary owns the socket, accepts, and hands each
	// connection to the next listening worker that asks for one (Node's
	// SCHED_RR): a worker asks with its listener's waiting Accept calls, so
	// a stopped or stalled worker is handed at most what it asked for.
	// Handed connections the worker's server has not accepted when it dies
	// or closes its listener go to another worker (unless the primary runs
	// WithHandoffWithoutRescue), and on Linux so do the TCP connections
	// its server accepted and had not read from or written to when it
	// died (the kernel tells the primary, which keeps a copy of each until
	// the server uses it).
	//
	// On Linux a worker's Accept returns the connection on the descriptor
	// it received, not a *net.TCPConn (net.FileConn would duplicate it and
	// make ten system calls more per connection): it has *net.TCPConn's
	// methods that servers use (CloseWrite, CloseRead, ReadFrom with
	// sendfile, SyscallConn, SetNoDelay, SetKeepAlive, SetLinger, buffer
	// sizes, File), so assert an interface, not the type. Its Close shuts
	// the connection down (shutdown(2)) before closing the descriptor,
	// because the primary may still hold a copy until it reads the
	// worker's report.
	SchedRoundRobin
	// SchedShared: the primary binds and sends the listening socket, and
	// workers accept from it themselves (Node's SCHED_NONE); the kernel
	// decides who gets each connection.
	SchedShared
	// SchedReusePort: the primary creates one SO_REUSEPORT socket per
	// worker on the same port and the kernel balances connections among
	// them (Linux). The primary keeps a copy of each socket: the
	// connections waiting in the queue of a worker that dies or closes its
	// listener go to the other workers. Elsewhere, and for unix sockets and
	// descriptors, it is SchedShared.
	SchedReusePort
)

// EnvSchedPolicy names the environment variable the primary reads for the
// cluster's default policy, as Node reads NODE_CLUSTER_SCHED_POLICY:
// "rr", "shared" (or "none") or "reuseport". WithSchedulingPolicy wins over
// it.
const EnvSchedPolicy = "HERD_SCHED_POLICY"

// String returns the policy's name as HERD_SCHED_POLICY spells it.
func (p SchedulingPolicy) String() string {
	switch p {
	case SchedDefault:
		return "default"
	case SchedRoundRobin:
		return "rr"
	case SchedShared:
		return "shared"
	case SchedReusePort:
		return "reuseport"
	}
	return fmt.Sprintf("policy(%d)", int(p))
}

// ParseSchedulingPolicy parses "rr", "shared" (or Node's "none") and
// "reuseport"; the empty string is SchedDefault.
func ParseSchedulingPolicy(s string) (SchedulingPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "default":
		return SchedDefault, nil
	case "rr", "round-robin", "roundrobin":
		return SchedRoundRobin, nil
	case "shared", "none":
		return SchedShared, nil
	case "reuseport":
		return SchedReusePort, nil
	}
	return SchedDefault, fmt.Errorf("herd: unknown scheduling policy %q (rr, shared, reuseport)", s)
}

func (p SchedulingPolicy) proto() herdv1.SchedulingPolicy {
	switch p {
	case SchedRoundRobin:
		return herdv1.SchedulingPolicy_SCHEDULING_POLICY_ROUND_ROBIN
	case SchedShared:
		return herdv1.SchedulingPolicy_SCHEDULING_POLICY_SHARED
	case SchedReusePort:
		return herdv1.SchedulingPolicy_SCHEDULING_POLICY_REUSEPORT
	}
	return herdv1.SchedulingPolicy_SCHEDULING_POLICY_UNSPECIFIED
}

func policyFromProto(p herdv1.SchedulingPolicy) SchedulingPolicy {
	switch p {
	case herdv1.SchedulingPolicy_SCHEDULING_POLICY_ROUND_ROBIN:
		return SchedRoundRobin
	case herdv1.SchedulingPolicy_SCHEDULING_POLICY_SHARED:
		return SchedShared
	case herdv1.SchedulingPolicy_SCHEDULING_POLICY_REUSEPORT:
		return SchedReusePort
	}
	return SchedDefault
}

// envPolicy is the policy named by HERD_SCHED_POLICY; unknown values are
// ignored (with a warning from the primary).
func envPolicy() (SchedulingPolicy, error) {
	return ParseSchedulingPolicy(os.Getenv(EnvSchedPolicy))
}

// ListenOption configures one Listen or ListenPacket call.
type ListenOption interface {
	applyToListen(*listenConfig)
}

type listenConfig struct {
	policy    SchedulingPolicy
	backlog   int
	exclusive bool
	fd        int // -1: none
	fdName    string
	unixMode  os.FileMode
	ipv6Only  bool
	maxConns  int

	acceptAhead int  // WithAcceptAhead: 0 the default, < 0 no bound
	deferAccept bool // WithDeferAccept
}

func newListenConfig(opts []ListenOption) listenConfig {
	c := listenConfig{fd: -1}
	for _, o := range opts {
		o.applyToListen(&c)
	}
	return c
}

type listenOptionFunc func(*listenConfig)

func (f listenOptionFunc) applyToListen(c *listenConfig) { f(c) }

// PolicyOption sets a scheduling policy: given to NewPrimary or Setup it is
// the cluster's default (Node's cluster.schedulingPolicy); given to Listen
// it applies to that address (when the call creates its handle).
type PolicyOption interface {
	PrimaryOption
	ListenOption
}

type policyOption SchedulingPolicy

func (o policyOption) applyToPrimary(s *settings)    { s.policy = SchedulingPolicy(o) }
func (o policyOption) applyToListen(c *listenConfig) { c.policy = SchedulingPolicy(o) }

// WithSchedulingPolicy sets the scheduling policy, for the cluster (as a
// PrimaryOption) or for one address (as a ListenOption).
func WithSchedulingPolicy(p SchedulingPolicy) PolicyOption { return policyOption(p) }

// WithHandoffWindow sets the most round-robin connections the primary
// hands one worker's listener before its server accepts them (default 16;
// Node allows 1), whatever the worker asks for. A worker asks for one
// connection when it starts listening and one per Accept call waiting, and,
// once its server accepts, one ahead while the primary has no backlog or up
// to this window while it has: a stalled worker holds what it asked for, a
// busy one gets batches (several connections in one message).
func WithHandoffWindow(n int) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.handoffWindow = n })
}

// WithHandoffWithoutRescue makes the round-robin primary give up its own
// descriptor of each connection as soon as the Handoff message carrying it
// is written to the worker's link (the link closes it after sendmsg),
// instead of keeping it until the worker reports that its server accepted
// the connection.
//
// What it gives up: by default a connection handed to a worker that dies,
// or closes its listener, before its server accepted it goes to another
// worker, and so does one the worker gives back (at its
// WithMaxConnections limit, or out of descriptors). With this option such
// connections are lost: their clients see the connection closed or reset.
// On a worker's death that is what its server had not accepted yet (at
// most the handoff window, WithHandoffWindow, per listener, usually one or
// two connections) and what it had accepted and not used.
//
// What it saves: the primary's per-connection work after the hand-off
// (tracking the copy, detaching it from the link when the report comes)
// and, above all, the chance that the primary's close is the connection's
// last reference and so pays the TCP teardown. README, "Performance",
// gives the figures measured on 2 CPUs.
func WithHandoffWithoutRescue() PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.handoffNoRescue = true })
}

// WithBacklog sets the listen backlog (default: the system's). For a
// round-robin address it also bounds the connections the primary holds
// while no worker is free.
func WithBacklog(n int) ListenOption {
	return listenOptionFunc(func(c *listenConfig) { c.backlog = n })
}

// WithExclusive makes a worker bind its own socket instead of sharing the
// primary's handle (Node's exclusive: true): no other worker shares it.
func WithExclusive() ListenOption {
	return listenOptionFunc(func(c *listenConfig) { c.exclusive = true })
}

// WithListenFD listens on a descriptor the primary holds, by number: an
// inherited or systemd-passed listening socket (Node's listen({fd})). The
// address is then only part of the handle's key.
func WithListenFD(fd int) ListenOption {
	return listenOptionFunc(func(c *listenConfig) { c.fd = fd })
}

// WithListenFDName listens on a socket passed to the primary under a name,
// by systemd's convention (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID):
// descriptors 3, 4, ... named in order. NewPrimary takes them over (they
// become close-on-exec and the variables leave the environment) and keeps
// their names.
func WithListenFDName(name string) ListenOption {
	return listenOptionFunc(func(c *listenConfig) { c.fdName = name })
}

// WithUnixMode sets the permission bits of a unix socket's file (Node's
// readableAll and writableAll), instead of the umask's.
func WithUnixMode(mode os.FileMode) ListenOption {
	return listenOptionFunc(func(c *listenConfig) { c.unixMode = mode.Perm() })
}

// WithIPv6Only turns dual-stack off on an IPv6 wildcard address (Node's
// ipv6Only): "[::]:80" then takes IPv6 connections only.
func WithIPv6Only() ListenOption {
	return listenOptionFunc(func(c *listenConfig) { c.ipv6Only = true })
}

// WithMaxConnections limits the connections the listener holds open (Node's
// server.maxConnections); n <= 0 means no limit. A connection counts from
// the moment the listener takes it until it is closed (Close of the
// connection Accept returned: Accept then returns a wrapper, whose NetConn
// method returns the connection itself, and closing that one directly does
// not count). With SchedRoundRobin a worker at its limit refuses what the
// primary hands it; the primary gives it to another worker of the address
// that may have room, or closes it. With the other policies, outside a
// cluster and for an exclusive listener, the listener closes what it
// accepts beyond the limit. ListenPacket ignores it.
func WithMaxConnections(n int) ListenOption {
	return listenOptionFunc(func(c *listenConfig) { c.maxConns = n })
}

// WithAcceptAhead bounds how far a worker's server accepts ahead of its
// work, so that a worker's death costs fewer connections: the listener's
// Accept waits while n connections it returned have not been begun (no
// Read, Write or Close called on them yet: the server's goroutine for them
// has not run), and the connections it does not accept stay with the
// cluster (in the shared socket's queue, in the reuseport socket's queue
// the primary rescues, or with the round-robin primary), so another worker
// serves them if this one dies. Accept then returns a wrapper, not a
// *net.TCPConn or *net.UnixConn: it has their methods (assert an interface
// such as interface{ SetKeepAlive(bool) error }), and its NetConn method
// returns the connection itself. An Accept that waited 100 ms for a
// place returns the next connection anyway, so a server that accepts
// several connections before it touches any is slowed, not stuck.
//
// n == 0 is the default: 1 with SchedShared and SchedReusePort (the bound
// herd-bench's kill scenario measured: README "What a worker's death
// costs"), none with SchedRoundRobin, whose primary already keeps what the
// server has not accepted, or not used; n < 0 turns the bound off (Accept takes what is
// there, as net.Listen's does). It applies to TCP and unix listeners in a
// worker, not to exclusive ones or outside a cluster, where no other
// process could serve what the listener leaves.
func WithAcceptAhead(n int) ListenOption {
	return listenOptionFunc(func(c *listenConfig) { c.acceptAhead = n })
}

// WithDeferAccept makes a TCP listener take a connection only once the
// client's first data arrived (Linux's TCP_DEFER_ACCEPT, nginx's
// "deferred"; ignored on other systems and for sockets the primary did not
// bind, WithListenFD and WithListenFDName). Until then the connection waits
// in the kernel, in the socket's queue, not in a worker: with
// SchedShared and SchedRoundRobin a worker that dies has not taken it, and
// a worker that accepts a connection finds its request there, so that a
// worker's death costs fewer connections (README, "What a worker's death
// costs"). Use it for protocols where the client speaks first (HTTP, TLS);
// a server that speaks first (SMTP, a MySQL-like handshake) would see
// each connection about a second late. With SchedReusePort a connection
// still waiting for its data in a dead worker's socket is reset when the
// primary closes that socket, unless net.ipv4.tcp_migrate_req is 1. Like
// the other socket options, it applies when the Listen call creates the
// address's handle.
func WithDeferAccept() ListenOption {
	return listenOptionFunc(func(c *listenConfig) { c.deferAccept = true })
}

// ErrListenUnsupported is returned where cluster listening is not
// available (systems without unix sockets).
var ErrListenUnsupported = errors.New("herd: shared listening is not supported on this platform")

// ErrNotStarted is returned (wrapped in a *net.OpError) by Listen and
// ListenPacket in a worker whose Self has not been started: the socket must
// come from the primary, which the worker reaches only once Start has run.
// Listen after Start, or use net.Listen for a socket of the worker's own.
var ErrNotStarted = errors.New("herd: Listen in a worker before Self.Start")

// Listen announces on the local network address (Node's server.listen). In
// a started worker the socket comes from the primary, which keeps one
// handle per (network, address, port, descriptor, index) key, shared by
// every worker that listens on it, and schedules its connections by the
// handle's policy. The k-th Listen of ":0" in each worker maps to the same
// port, and a Listen of the port another worker got from ":0" joins that
// worker's handle. Outside a cluster (in the primary, or any process that is not a
// worker) it is net.Listen, with the options honoured where they can be. In
// a worker before Self.Start it fails with ErrNotStarted.
//
// network is "tcp", "tcp4", "tcp6" or "unix". Bind failures match
// syscall.EADDRINUSE, syscall.EACCES and so on with errors.Is. The listener
// works with http.Serve, gRPC and any net.Listener consumer; closing it
// releases the worker's share of the handle, and the primary closes the
// socket when the last worker has left.
func Listen(ctx context.Context, network, address string, opts ...ListenOption) (net.Listener, error) {
	cfg := newListenConfig(opts)
	switch network {
	case "tcp", "tcp4", "tcp6", "unix":
	default:
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	if s := current.Load(); s != nil {
		return s.listen(ctx, network, address, &cfg)
	}
	if IsWorker() {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: strAddr{network, address}, Err: ErrNotStarted}
	}
	return listenLocal(ctx, network, address, &cfg)
}

// ListenPacket is Listen for UDP ("udp", "udp4", "udp6"): the socket is
// always shared (or one per worker with SchedReusePort), as in Node's
// dgram cluster support.
func ListenPacket(ctx context.Context, network, address string, opts ...ListenOption) (net.PacketConn, error) {
	cfg := newListenConfig(opts)
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	if s := current.Load(); s != nil {
		return s.listenPacket(ctx, network, address, &cfg)
	}
	if IsWorker() {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: strAddr{network, address}, Err: ErrNotStarted}
	}
	return listenPacketLocal(ctx, network, address, &cfg)
}

// ListenTLS is Listen followed by tls.NewListener, with cfg's session
// ticket keys set to the handle's (see ShareTLSSessionTickets), so that a
// session resumed on any worker works. cfg must not be in use yet.
func ListenTLS(ctx context.Context, network, address string, cfg *tls.Config, opts ...ListenOption) (net.Listener, error) {
	ln, err := Listen(ctx, network, address, opts...)
	if err != nil {
		return nil, err
	}
	if err := ShareTLSSessionTickets(ln, cfg); err != nil {
		ln.Close()
		return nil, err
	}
	return tls.NewListener(ln, cfg), nil
}

// ShareTLSSessionTickets sets cfg's session ticket keys to the ones the
// primary generated for ln's handle, so that TLS sessions (and tickets) a
// worker issues are accepted by every worker of the handle, as Node
// distributes its servers' ticket keys. For a listener that is not a
// worker's cluster listener it does nothing. Call it before cfg is used.
func ShareTLSSessionTickets(ln net.Listener, cfg *tls.Config) error {
	if cfg == nil {
		return errors.New("herd: nil tls.Config")
	}
	cl, ok := ln.(interface{ serverData() []byte })
	if !ok {
		return nil
	}
	data := cl.serverData()
	if len(data) < 32 || len(data)%32 != 0 {
		return nil
	}
	keys := make([][32]byte, len(data)/32)
	for i := range keys {
		copy(keys[i][:], data[32*i:])
	}
	cfg.SetSessionTicketKeys(keys)
	return nil
}

// ListenerPolicy reports the scheduling policy the primary applied to a
// listener returned by Listen or ListenPacket in a worker; false for any
// other listener (such as one made outside a cluster, or exclusive).
func ListenerPolicy(l any) (SchedulingPolicy, bool) {
	cl, ok := l.(interface {
		policy() (SchedulingPolicy, bool)
	})
	if !ok {
		return SchedDefault, false
	}
	return cl.policy()
}

// strAddr is an address as given, for errors and for addresses that do
// not parse.
type strAddr struct{ net, s string }

func (a strAddr) Network() string { return a.net }
func (a strAddr) String() string  { return a.s }
