//go:build unix

package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// closeListenerTimeout bounds the CloseListener call of a closing listener.
const closeListenerTimeout = 5 * time.Second

// listenerSet is a worker's cluster listeners.
type listenerSet struct {
	mu      sync.Mutex
	nextID  uint64
	indexes map[string]map[uint32]bool // index key → indexes in use
	open    map[uint64]clusterListener // every open listener, by ID
	rr      map[uint64]*rrListener     // round-robin listeners (and pending listens), by ID
}

// clusterListener is a worker listener that must be closed when the
// worker disconnects.
type clusterListener interface {
	closeCluster() error
}

// listenEntry is what every worker listener knows of its place in the
// cluster.
type listenEntry struct {
	s      *Self
	id     uint64
	ikey   string
	index  uint32
	pol    SchedulingPolicy
	data   []byte
	shared bool // the primary holds a handle for it (not exclusive)
}

// policy is the policy of the listener's handle; false for an exclusive
// listener, which has none.
func (e *listenEntry) policy() (SchedulingPolicy, bool) {
	if !e.shared {
		return SchedDefault, false
	}
	return e.pol, true
}

func (e *listenEntry) serverData() []byte { return e.data }

// newEntry reserves a listener ID and the lowest free index of ikey: the
// k-th open listen of the same address in this worker has index k, so that
// the k-th ":0" of every worker maps to the same handle (Node's indexes),
// and a second listen of a fixed port maps to a second handle, whose bind
// fails.
func (s *Self) newEntry(ikey string) *listenEntry {
	s.ls.mu.Lock()
	defer s.ls.mu.Unlock()
	if s.ls.indexes == nil {
		s.ls.indexes = make(map[string]map[uint32]bool)
		s.ls.open = make(map[uint64]clusterListener)
		s.ls.rr = make(map[uint64]*rrListener)
	}
	s.ls.nextID++
	if ikey == "" { // exclusive: no handle, no index
		return &listenEntry{s: s, id: s.ls.nextID}
	}
	used := s.ls.indexes[ikey]
	if used == nil {
		used = make(map[uint32]bool)
		s.ls.indexes[ikey] = used
	}
	var index uint32
	for used[index] {
		index++
	}
	used[index] = true
	return &listenEntry{s: s, id: s.ls.nextID, ikey: ikey, index: index}
}

// forget releases e's index and removes its listener from the set.
func (s *Self) forget(e *listenEntry) {
	s.ls.mu.Lock()
	defer s.ls.mu.Unlock()
	if used := s.ls.indexes[e.ikey]; used != nil {
		delete(used, e.index)
		if len(used) == 0 {
			delete(s.ls.indexes, e.ikey)
		}
	}
	delete(s.ls.open, e.id)
	delete(s.ls.rr, e.id)
}

func (s *Self) track(id uint64, l clusterListener) {
	s.ls.mu.Lock()
	s.ls.open[id] = l
	s.ls.mu.Unlock()
}

// closeListeners closes every cluster listener: the first step of a
// disconnect, as Node closes a worker's servers, so that Serve returns.
func (s *Self) closeListeners() {
	s.ls.mu.Lock()
	ls := make([]clusterListener, 0, len(s.ls.open))
	for _, l := range s.ls.open {
		ls = append(ls, l)
	}
	s.ls.mu.Unlock()
	for _, l := range ls {
		l.closeCluster()
	}
}

// releaseHandle tells the primary the worker left listener id's handle,
// returning connections it had taken but not accepted, then closes them.
func (s *Self) releaseHandle(id uint64, back []net.Conn) {
	defer func() {
		for _, c := range back {
			c.Close()
		}
	}()
	select {
	case <-s.ep.closed:
		return
	default:
	}
	req := &herdv1.CloseListenerRequest{ListenerId: id, Count: uint32(len(back))}
	var opts []CallOption
	if len(back) > 0 {
		conns := make([]syscall.Conn, 0, len(back))
		for _, c := range back {
			if sc, ok := c.(syscall.Conn); ok {
				conns = append(conns, sc)
			}
		}
		req.Count = uint32(len(conns))
		opts = []CallOption{WithFiles(conns...)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeListenerTimeout)
	defer cancel()
	if _, err := s.rpc.CloseListener(ctx, req, opts...); err != nil {
		s.cfg.endpoint.logger.Debug("herd: close listener", "listener", id, "error", err)
	}
}

// indexKey is the part of a handle's key the worker counts listens of.
func indexKey(network, address string, cfg *listenConfig) string {
	return network + "\x00" + address + "\x00" + strconv.Itoa(cfg.fd) + "\x00" + cfg.fdName
}

// requestListen asks the primary for a handle. On success it returns the
// response and its descriptors; a bind failure is returned as an error
// matching its errno.
func (s *Self) requestListen(ctx context.Context, e *listenEntry, network, address string, cfg *listenConfig) (*herdv1.ListenResponse, []*os.File, error) {
	req := &herdv1.ListenRequest{
		Network:     network,
		Address:     address,
		Index:       e.index,
		Policy:      cfg.policy.proto(),
		Backlog:     int32(cfg.backlog),
		FdName:      cfg.fdName,
		UnixMode:    uint32(cfg.unixMode),
		Ipv6Only:    cfg.ipv6Only,
		ListenerId:  e.id,
		DeferAccept: cfg.deferAccept,
	}
	if cfg.fd >= 0 {
		fd := int32(cfg.fd)
		req.Fd = &fd
	}
	var files []*os.File
	res, err := s.rpc.Listen(ctx, req, WithResponseFiles(&files))
	if err != nil {
		// The primary may have made us a member before the call ended on
		// our side: the caller releases the share (harmless when it was
		// not made).
		return nil, nil, &listenCallError{&net.OpError{Op: "listen", Net: network, Err: err}}
	}
	if res.GetErrno() != 0 || res.GetError() != "" || res.GetRefusal() != 0 {
		closeFiles(files)
		var cause error = errors.New(res.GetError())
		if r := refusedListen(res); r != nil {
			cause = r
		} else if res.GetErrno() != 0 {
			cause = os.NewSyscallError("bind", syscall.Errno(res.GetErrno()))
		}
		return nil, nil, &net.OpError{Op: "listen", Net: network, Addr: opAddr(network, address), Err: cause}
	}
	e.pol = policyFromProto(res.GetPolicy())
	e.data = res.GetServerData()
	e.shared = true
	return res, files, nil
}

// listenCallError is a Listen call that failed on the link or by its
// context: the primary may have made the worker a member of the handle.
type listenCallError struct{ err *net.OpError }

func (e *listenCallError) Error() string { return e.err.Error() }
func (e *listenCallError) Unwrap() error { return e.err }

// listen is Listen in a started worker.
func (s *Self) listen(ctx context.Context, network, address string, cfg *listenConfig) (net.Listener, error) {
	if cfg.exclusive {
		ln, err := listenLocal(ctx, network, address, cfg)
		if err != nil {
			return nil, err
		}
		e := s.newEntry("")
		l := &sharedListener{Listener: ln, listenEntry: e, addr: ln.Addr()}
		s.track(e.id, l)
		s.reportListening(network, address, ln.Addr(), -1)
		return l, nil
	}
	if network == "unix" {
		abs, err := absUnixPath(address)
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: err}
		}
		address = abs
	}
	e := s.newEntry(indexKey(network, address, cfg))
	rl := newRRListener(e)
	rl.lim = newConnLimit(cfg.maxConns)
	s.ls.mu.Lock()
	s.ls.rr[e.id] = rl // hand-offs may arrive before the response
	s.ls.mu.Unlock()
	res, files, err := s.requestListen(ctx, e, network, address, cfg)
	if err != nil {
		var ce *listenCallError
		if errors.As(err, &ce) {
			// Hand-offs may have reached rl: give them back with the share.
			go rl.closeCluster()
			return nil, ce.err
		}
		s.forget(e)
		return nil, err
	}
	addr := parseAddr(network, res.GetAddress())
	if e.pol == SchedRoundRobin {
		closeFiles(files)
		rl.setAddr(addr)
		rl.setWindow(res.GetHandoffWindow())
		rl.prime()
		s.track(e.id, rl)
		s.reportListening(network, address, addr, cfg.fd)
		// With round robin the bound is off unless asked for
		// (worker_listener_ahead_unix.go).
		if cfg.acceptAhead > 0 {
			return &rrAhead{rrListener: rl, gate: newAcceptGate(cfg.acceptAhead)}, nil
		}
		return rl, nil
	}
	s.ls.mu.Lock()
	delete(s.ls.rr, e.id)
	s.ls.mu.Unlock()
	ln, err := fileListener(files)
	if err != nil {
		s.forget(e)
		s.releaseHandle(e.id, nil)
		return nil, &net.OpError{Op: "listen", Net: network, Addr: addr, Err: err}
	}
	served := aheadListen(limitListen(adoptable(e, ln), cfg.maxConns), newAcceptGate(cfg.acceptAhead))
	l := &sharedListener{Listener: served, listenEntry: e, addr: addr}
	s.track(e.id, l)
	s.reportListening(network, address, addr, cfg.fd)
	return l, nil
}

// listenPacket is ListenPacket in a started worker.
func (s *Self) listenPacket(ctx context.Context, network, address string, cfg *listenConfig) (net.PacketConn, error) {
	if cfg.exclusive {
		pc, err := listenPacketLocal(ctx, network, address, cfg)
		if err != nil {
			return nil, err
		}
		e := s.newEntry("")
		l := &sharedPacketConn{PacketConn: pc, listenEntry: e}
		s.track(e.id, l)
		s.reportListening(network, address, pc.LocalAddr(), -1)
		return l, nil
	}
	e := s.newEntry(indexKey(network, address, cfg))
	_, files, err := s.requestListen(ctx, e, network, address, cfg)
	if err != nil {
		s.forget(e)
		var ce *listenCallError
		if errors.As(err, &ce) {
			go s.releaseHandle(e.id, nil)
			return nil, ce.err
		}
		return nil, err
	}
	var pc net.PacketConn
	if len(files) == 1 {
		pc, err = net.FilePacketConn(files[0])
	} else {
		err = fmt.Errorf("herd: primary sent %d descriptors for a packet socket", len(files))
	}
	closeFiles(files)
	if err != nil {
		s.forget(e)
		s.releaseHandle(e.id, nil)
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	l := &sharedPacketConn{PacketConn: pc, listenEntry: e}
	s.track(e.id, l)
	s.reportListening(network, address, pc.LocalAddr(), cfg.fd)
	return l, nil
}

// fileListener makes a listener of the one descriptor a shared or
// reuseport handle sends, and closes the files.
func fileListener(files []*os.File) (net.Listener, error) {
	defer closeFiles(files)
	if len(files) != 1 {
		return nil, fmt.Errorf("herd: primary sent %d descriptors for a listener", len(files))
	}
	return net.FileListener(files[0])
}

// reportListening tells the primary a server listens (Node's 'listening'
// message): its worker's state becomes listening and the listening events
// fire.
func (s *Self) reportListening(network, given string, addr net.Addr, fd int) {
	a := &herdv1.Address{Network: network, Fd: int32(fd), Port: -1}
	switch addr := addr.(type) {
	case *net.UnixAddr:
		a.Address = addr.Name
	case *net.TCPAddr:
		a.Port = int32(addr.Port)
	case *net.UDPAddr:
		a.Port = int32(addr.Port)
	}
	if network != "unix" {
		if host, _, err := net.SplitHostPort(given); err == nil {
			a.Address = host
		}
	}
	_ = s.rpc.SendListening(context.Background(), &herdv1.ListeningRequest{Address: a})
}

// parseAddr turns the address a handle reports into a net.Addr.
func parseAddr(network, s string) net.Addr {
	switch network {
	case "unix":
		return &net.UnixAddr{Name: s, Net: "unix"}
	case "udp", "udp4", "udp6":
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return net.UDPAddrFromAddrPort(ap)
		}
	default:
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return net.TCPAddrFromAddrPort(ap)
		}
	}
	return strAddr{network, s}
}

// opAddr is the address of a failed listen, for its error.
func opAddr(network, s string) net.Addr {
	if network == "unix" {
		return &net.UnixAddr{Name: s, Net: "unix"}
	}
	return strAddr{network, s}
}

// sharedListener is a worker's listener on its own copy of a socket: a
// shared handle's, a reuseport socket, or an exclusive one.
type sharedListener struct {
	net.Listener
	*listenEntry
	addr      net.Addr
	closeOnce sync.Once
}

// Addr returns the handle's address (for a unix socket, the absolute path).
func (l *sharedListener) Addr() net.Addr { return l.addr }

// Close closes the listener and releases the worker's share of the handle.
func (l *sharedListener) Close() error { return l.closeCluster() }

func (l *sharedListener) closeCluster() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		err = l.Listener.Close()
		l.s.forget(l.listenEntry)
		if l.shared {
			l.s.releaseHandle(l.id, adoptLeftovers(l.Listener))
		}
	})
	return err
}

// sharedPacketConn is a worker's copy of a shared or reuseport UDP socket.
type sharedPacketConn struct {
	net.PacketConn
	*listenEntry
	closeOnce sync.Once
}

// Close closes the socket and releases the worker's share of the handle.
func (l *sharedPacketConn) Close() error { return l.closeCluster() }

func (l *sharedPacketConn) closeCluster() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		err = l.PacketConn.Close()
		l.s.forget(l.listenEntry)
		if l.shared {
			l.s.releaseHandle(l.id, nil)
		}
	})
	return err
}

// rrAhead is a round-robin listener that bounds how far its server accepts
// ahead (worker_listener_ahead_unix.go): while its server holds the bound's count of
// connections not begun, the listener does not call Accept, so it asks the
// primary for no more and the primary hands the rest to other workers.
type rrAhead struct {
	*rrListener
	gate *acceptGate
}

// Accept waits for a place, then for the next handed-off connection.
func (l *rrAhead) Accept() (net.Conn, error) {
	placed, ok := l.gate.acquire(l.done)
	if !ok {
		return nil, l.closedErr()
	}
	c, err := l.rrListener.Accept()
	if err != nil {
		if placed {
			l.gate.release()
		}
		return nil, err
	}
	return l.gate.wrap(c, placed), nil
}
