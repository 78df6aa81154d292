package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/link"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// EnvAdminSocket names the environment variable that, set to a path, makes
// a pool serve its admin socket there when no WithAdminSocket option says
// otherwise, and tells herdctl where to connect. Workers do not inherit
// it.
const EnvAdminSocket = "HERD_ADMIN_SOCKET"

// The admin socket's defaults.
const (
	// DefaultAdminSocketMode is the admin socket file's mode: only its
	// owner (the primary's user) may connect.
	DefaultAdminSocketMode os.FileMode = 0o600
	// DefaultAdminMaxClients bounds the clients connected at once; more
	// are refused with CodeResourceExhausted.
	DefaultAdminMaxClients = 16
	// DefaultAdminHandshakeTimeout is how long a new client has to send
	// its first frame, and DefaultAdminIdleTimeout how long a client may
	// then stay connected with no call in flight and nothing sent, before
	// the primary closes its connection.
	DefaultAdminHandshakeTimeout = 5 * time.Second
	DefaultAdminIdleTimeout      = 60 * time.Second
	// MaxAdminScale is the largest pool size Scale accepts from the admin
	// socket.
	MaxAdminScale = 1024
)

// adminMaxFrame bounds a frame on the admin socket, both ways: requests are
// small, and a status of MaxAdminScale workers fits well within it. A
// client that announces more is disconnected.
const adminMaxFrame = 1 << 20

// ErrAdminUnsupported is returned where the admin socket cannot be served
// or reached: where there are no herd links (Windows), or where the peer's
// credentials cannot be read.
var ErrAdminUnsupported = errors.New("herd: the admin socket is not supported on this system")

// AdminOption configures the admin socket (WithAdminSocket).
type AdminOption interface {
	applyToAdmin(*adminConfig)
}

type adminOptionFunc func(*adminConfig)

func (f adminOptionFunc) applyToAdmin(c *adminConfig) { f(c) }

type adminConfig struct {
	path       string
	mode       os.FileMode
	uids       []int
	maxClients int
	handshake  time.Duration
	idle       time.Duration
	events     int
}

// WithAdminSocketMode sets the admin socket file's permission bits (default
// 0600). Connecting to a unix socket needs write permission on its file, so
// the mode is the first gate; the peer's credentials are checked anyway.
func WithAdminSocketMode(mode os.FileMode) AdminOption {
	return adminOptionFunc(func(c *adminConfig) { c.mode = mode.Perm() })
}

// WithAdminAllowUIDs adds users allowed on the admin socket, by user ID, to
// root and the primary's own (effective) user, who always are. Every
// connection's peer is checked with SO_PEERCRED (LOCAL_PEERCRED on macOS)
// when it connects; a refused peer gets CodePermissionDenied and a log
// record.
func WithAdminAllowUIDs(uids ...int) AdminOption {
	return adminOptionFunc(func(c *adminConfig) { c.uids = append(c.uids, uids...) })
}

// WithAdminMaxClients bounds the clients connected at once (default 16).
func WithAdminMaxClients(n int) AdminOption {
	return adminOptionFunc(func(c *adminConfig) { c.maxClients = n })
}

// WithAdminTimeouts sets how long a new client has to send its first frame
// (default 5 s), and how long a client may stay connected with no call in
// flight and nothing sent (default 60 s).
func WithAdminTimeouts(handshake, idle time.Duration) AdminOption {
	return adminOptionFunc(func(c *adminConfig) { c.handshake, c.idle = handshake, idle })
}

// WithAdminEventBuffer sets how many recent events Watch can return
// (default DefaultAdminEventBuffer).
func WithAdminEventBuffer(n int) AdminOption {
	return adminOptionFunc(func(c *adminConfig) { c.events = n })
}

// WithAdminSocket makes the pool serve herd.v1.AdminService (what herdctl
// calls) on a unix stream socket at path, from Start until the pool has
// ended: a stale socket file left by a primary that died is replaced, any
// other file there is an error. Each connection is a herd link (the same
// framing, call machinery and generated messages as a worker's, without
// descriptors), its peer's user checked when it connects (root and the
// primary's own user by default, WithAdminAllowUIDs for more), the socket
// file mode 0600 (WithAdminSocketMode). A client that sends a malformed or
// oversized frame, or nothing, loses its own connection only.
//
// Without this option a pool serves the admin socket at $HERD_ADMIN_SOCKET
// when it is set; WithAdminSocket("") turns that off.
func WithAdminSocket(path string, opts ...AdminOption) PoolOption {
	return poolOptionFunc(func(c *poolConfig) {
		c.admin = &adminConfig{path: path}
		for _, o := range opts {
			o.applyToAdmin(c.admin)
		}
	})
}

// adminSetting returns the pool's admin socket configuration, with the
// defaults, or nil when the pool serves none.
func (c *poolConfig) adminSetting() *adminConfig {
	ac := c.admin
	if ac == nil {
		path := os.Getenv(EnvAdminSocket)
		if path == "" {
			return nil
		}
		ac = &adminConfig{path: path}
	}
	if ac.path == "" {
		return nil
	}
	cp := *ac
	if cp.mode == 0 {
		cp.mode = DefaultAdminSocketMode
	}
	if cp.maxClients <= 0 {
		cp.maxClients = DefaultAdminMaxClients
	}
	if cp.handshake <= 0 {
		cp.handshake = DefaultAdminHandshakeTimeout
	}
	if cp.idle <= 0 {
		cp.idle = DefaultAdminIdleTimeout
	}
	if cp.events <= 0 {
		cp.events = DefaultAdminEventBuffer
	}
	return &cp
}

// adminServer serves a pool's admin socket.
type adminServer struct {
	pl     *Pool
	cfg    adminConfig
	log    *slog.Logger
	ln     *net.UnixListener
	sock   *adminSocketFile
	mux    Mux // the AdminService handlers (admin_service.go)
	empty  Mux // no control procedures on the admin socket
	events *eventLog
	uid    int // the primary's effective user

	slots    chan struct{} // one token per client connected
	refusing chan struct{} // one token per refusal being answered

	mu     sync.Mutex
	conns  map[*endpoint]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and one monitor per client
}

// adminPeer is who is at the other end of an admin connection, for the
// handlers' logs.
type adminPeer struct {
	uid, pid int
}

type adminPeerKey struct{}

// startAdmin starts serving the pool's admin socket, if it has one.
func (pl *Pool) startAdmin() error {
	ac := pl.cfg.adminSetting()
	if ac == nil {
		return nil
	}
	a := &adminServer{
		pl: pl, cfg: *ac, log: pl.log, uid: os.Geteuid(),
		events:   newEventLog(ac.events),
		slots:    make(chan struct{}, ac.maxClients),
		refusing: make(chan struct{}, ac.maxClients),
		conns:    make(map[*endpoint]struct{}),
	}
	if err := a.register(); err != nil {
		return err
	}
	ln, sock, err := listenAdmin(ac.path, ac.mode)
	if err != nil {
		return fmt.Errorf("herd: admin socket: %w", err)
	}
	a.ln, a.sock = ln, sock
	pl.p.events.Store(a.events)
	pl.mu.Lock()
	pl.admin = a
	pl.mu.Unlock()
	a.wg.Add(1)
	go a.accept()
	pl.log.Info("herd: admin socket listening", "path", ac.path, "mode", fmt.Sprintf("%#o", ac.mode))
	return nil
}

// stopAdmin closes the admin socket and every client's connection, and
// removes the socket file.
func (pl *Pool) stopAdmin() {
	pl.mu.Lock()
	a := pl.admin
	pl.mu.Unlock()
	if a != nil {
		a.close()
	}
}

// AdminAddr returns the path of the admin socket the pool serves, "" when it
// serves none (or not yet: the socket is created by Start).
func (pl *Pool) AdminAddr() string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.admin == nil {
		return ""
	}
	return pl.admin.cfg.path
}

func (a *adminServer) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	conns := make([]*endpoint, 0, len(a.conns))
	for ep := range a.conns {
		conns = append(conns, ep)
	}
	a.mu.Unlock()
	a.ln.Close()
	a.sock.remove()
	for _, ep := range conns {
		ep.link.Close()
	}
	a.wg.Wait()
	a.pl.p.events.CompareAndSwap(a.events, nil)
}

func (a *adminServer) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

// accept takes connections until the socket is closed.
func (a *adminServer) accept() {
	defer a.wg.Done()
	var pause time.Duration
	for {
		c, err := a.ln.AcceptUnix()
		if err != nil {
			if a.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, most likely: wait, as net/http does.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			a.log.Warn("herd: admin socket: accept failed; retrying", "error", err, "retry_in", pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		a.admit(c)
	}
}

// admit checks a new connection's peer and, if it may, serves it.
func (a *adminServer) admit(c *net.UnixConn) {
	peer, err := peerCredentials(c)
	if err != nil {
		a.refuse(c, adminPeer{uid: -1, pid: -1}, CodeUnimplemented, fmt.Sprintf("herd admin: cannot check who you are: %v", err))
		return
	}
	if !a.allowed(peer.uid) {
		a.refuse(c, peer, CodePermissionDenied, fmt.Sprintf("herd admin: user %d may not use this admin socket (allowed: root, the primary's user %d%s)", peer.uid, a.uid, a.allowList()))
		return
	}
	if w := a.workerByPID(peer.pid); w != nil {
		a.refuse(c, peer, CodePermissionDenied, fmt.Sprintf("herd admin: process %d is worker %d of this primary, or a process it started; workers may not use its admin socket", peer.pid, w.id))
		return
	}
	select {
	case a.slots <- struct{}{}:
	default:
		a.refuse(c, peer, CodeResourceExhausted, fmt.Sprintf("herd admin: too many clients: %d are connected, at most %d (WithAdminMaxClients)", len(a.slots), cap(a.slots)))
		return
	}
	if err := a.serve(c, peer); err != nil {
		<-a.slots
		a.log.Warn("herd: admin socket: cannot serve a client", "uid", peer.uid, "pid", peer.pid, "error", err)
	}
}

func (a *adminServer) allowed(uid int) bool {
	return uid == 0 || uid == a.uid || slices.Contains(a.cfg.uids, uid)
}

func (a *adminServer) allowList() string {
	if len(a.cfg.uids) == 0 {
		return ""
	}
	s := ""
	for _, u := range a.cfg.uids {
		s += ", " + strconv.Itoa(u)
	}
	return "; WithAdminAllowUIDs" + s
}

// workerByPID is the primary's live worker that is process pid or, on
// Linux, one of its ancestors (a process a worker started), if any: a
// worker running as the primary's user must not drive its siblings through
// the admin socket.
func (a *adminServer) workerByPID(pid int) *Worker {
	if pid <= 0 {
		return nil
	}
	byPID := make(map[int]*Worker)
	for _, w := range a.pl.p.Workers() {
		byPID[w.pid] = w
	}
	me := os.Getpid()
	for range 64 { // a bound on the ancestry walked
		if w := byPID[pid]; w != nil {
			return w
		}
		ppid, ok := parentPID(pid)
		if !ok || ppid <= 1 || ppid == me {
			return nil
		}
		pid = ppid
	}
	return nil
}

// refuse answers a connection it will not serve: it logs why, reads the
// client's first call (within the handshake timeout) and answers it with
// code and msg, so the client learns why, then closes the connection. At
// most as many refusals as clients run at once; beyond, a connection is
// closed at once.
func (a *adminServer) refuse(c *net.UnixConn, peer adminPeer, code Code, msg string) {
	a.log.Warn("herd: admin socket: refused a client", "uid", peer.uid, "pid", peer.pid, "code", code, "reason", msg)
	select {
	case a.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() { <-a.refusing }()
		defer c.Close()
		c.SetDeadline(time.Now().Add(a.cfg.handshake))
		// The client's endpoint sends a call only within the credit it
		// was granted (credit.go): grant one, as an endpoint's first
		// frame would.
		grant := wire.Header{Procedure: controlServiceCreditProcedure, Flags: wire.FlagSystem}
		if b, err := wire.AppendFrame(nil, &grant, &herdv1.CreditRequest{Frames: 1, Bytes: 64 << 10}, adminMaxFrame); err != nil {
			return
		} else if _, err := c.Write(b); err != nil {
			return
		}
		id, ok := firstCall(c)
		if !ok {
			return
		}
		h := wire.Header{ReplyTo: id, ErrorCode: int32(code), ErrorMessage: msg}
		b, err := wire.AppendFrame(nil, &h, nil, adminMaxFrame)
		if err == nil {
			c.Write(b)
		}
	}()
}

// firstCall reads frames from c until one is a call (a request with a call
// ID: the client's endpoint sends its credit first), within 64 KiB.
func firstCall(c *net.UnixConn) (uint64, bool) {
	const limit = 64 << 10
	buf := make([]byte, 0, 4096)
	var env wire.Envelope
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		for {
			k, derr := wire.Decode(buf, limit, &env)
			if derr != nil {
				return 0, false
			}
			if k == 0 {
				break
			}
			if env.CallID != 0 {
				return env.CallID, true
			}
			buf = buf[:copy(buf, buf[k:])]
		}
		if err != nil {
			return 0, false
		}
	}
	return 0, false
}

// serve runs a herd link on c for an allowed client.
func (a *adminServer) serve(c *net.UnixConn, peer adminPeer) error {
	f, err := c.File()
	c.Close()
	if err != nil {
		return err
	}
	cfg := endpointConfig{
		maxFrame: adminMaxFrame, mailboxCap: 8, mailboxBytes: 256 << 10, maxQueuedFDs: 1,
		logger: a.log,
	}
	ctx := context.WithValue(context.Background(), adminPeerKey{}, peer)
	var ep *endpoint
	ep = newEndpoint(cfg, &a.empty, &a.mux, nil, ctx, func(code Code, procedure string, err error) {
		a.log.Debug("herd: admin socket: client error", "uid", peer.uid, "pid", peer.pid, "code", code, "procedure", procedure, "error", err)
	})
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		f.Close()
		return ErrPoolStopped
	}
	a.conns[ep] = struct{}{}
	a.wg.Add(1)
	a.mu.Unlock()
	if err := ep.start(f, link.WithoutFDs()); err != nil {
		a.mu.Lock()
		delete(a.conns, ep)
		a.mu.Unlock()
		a.wg.Done()
		return err
	}
	a.log.Debug("herd: admin socket: client connected", "uid", peer.uid, "pid", peer.pid)
	go a.monitor(ep, peer)
	return nil
}

// monitor closes a client's connection that sends nothing within the
// handshake timeout, or stays idle (no call in flight, nothing received)
// for the idle timeout, and cleans up once the connection has ended.
func (a *adminServer) monitor(ep *endpoint, peer adminPeer) {
	defer a.wg.Done()
	defer func() { <-a.slots }()
	t := time.NewTimer(a.cfg.handshake)
	defer t.Stop()
	var seen uint64
	first := true
	for {
		select {
		case <-ep.link.Done():
			a.ended(ep, peer)
			return
		case <-t.C:
		}
		got := ep.link.Stats().FramesReceived
		busy := ep.inflight.busy()
		switch {
		case first && got == 0:
			a.log.Warn("herd: admin socket: a client sent nothing; closed", "uid", peer.uid, "pid", peer.pid, "timeout", a.cfg.handshake)
			ep.link.Abort(errAdminSilent)
		case !first && got == seen && !busy:
			a.log.Debug("herd: admin socket: idle client closed", "uid", peer.uid, "pid", peer.pid)
			ep.link.Abort(errAdminIdle)
		}
		first, seen = false, got
		t.Reset(a.cfg.idle)
	}
}

// Why the primary closes an admin client's connection on its own: they
// wrap ErrLinkClosed, as they end no more than a local Close does.
var (
	errAdminSilent = fmt.Errorf("%w: the admin client sent nothing within the handshake timeout", ErrLinkClosed)
	errAdminIdle   = fmt.Errorf("%w: the admin client was idle", ErrLinkClosed)
)

// ended forgets a finished connection.
func (a *adminServer) ended(ep *endpoint, peer adminPeer) {
	if code, err := ep.linkFailure(); err != nil {
		a.log.Warn("herd: admin socket: a client's connection failed; closed", "uid", peer.uid, "pid", peer.pid, "code", code, "error", err)
	}
	ep.box.Close()
	ep.ctl.Close()
	a.mu.Lock()
	delete(a.conns, ep)
	a.mu.Unlock()
}
