//go:build unix

package runtime

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// defaultHandoffWindow is the most round-robin connections a worker's
// listener may hold handed and not accepted by its server, whatever it
// asks for. A worker asks for what its waiting Accept calls need and, only
// while the primary has a backlog, more ahead (see rrListener); Node
// allows one. With a new connection per request the hand-off round trip
// limits throughput when a worker asks for one at a time (measured with
// two workers on two cores: a window of 4 gave 0.55x the connections per
// second of a single Go process, 8 gave 0.68x, 16 gave 0.91x), so a busy
// worker may ask for up to 16; what it holds is re-routed when it dies.
const defaultHandoffWindow = 16

// defaultRRBacklog bounds the connections a round-robin handle holds while
// no worker is free, when no backlog was given.
const defaultRRBacklog = 1024

// handleKey identifies a handle, as Node keys them: the k-th listen of the
// same address by each worker joins the same handle.
type handleKey struct {
	network string
	address string
	fd      int32
	fdName  string
	index   uint32
}

// portTable is the primary's handles and which worker holds a share of
// which.
type portTable struct {
	p        *Primary
	mu       sync.Mutex
	handles  map[handleKey]portHandle
	byWorker map[*Worker]map[uint64]*membership
	nextKey  atomic.Uint64
}

// membership is one worker listener's share of a handle.
type membership struct {
	w  *Worker
	id uint64 // the worker's listener ID
	h  portHandle
	rr *rrMember // for round-robin handles
	// linkEnded: the member leaves because its worker's link ended (it
	// died, or exited without closing its listener), not by CloseListener.
	linkEnded bool
}

// portHandle is one shared address: round-robin, shared or reuseport.
type portHandle interface {
	// join adds a worker's listener; the returned descriptors go with the
	// response (the caller closes them once sent).
	join(m *membership) (fds []int, err error)
	// leave removes a worker's listener; returned holds connections it
	// gives back (round-robin), owned by the handle from then on.
	leave(m *membership, returned []*os.File)
	// stop stops giving connections to a leaving worker's listener.
	stop(m *membership)
	// members counts the listeners still sharing the handle.
	members() int
	// close closes the socket; the handle is no longer in the table.
	close()
	base() *handleBase
}

// handleBase is what every handle has.
type handleBase struct {
	key     handleKey
	id      uint64
	policy  SchedulingPolicy
	network string
	address string      // the bound address, with the real port; absolute path for unix
	sock    *unixSocket // the unix socket file to remove when the handle closes
	data    []byte      // TLS session ticket keys shared by the handle's workers
}

func (b *handleBase) base() *handleBase { return b }

func newPortTable(p *Primary) *portTable {
	return &portTable{p: p, handles: make(map[handleKey]portHandle), byWorker: make(map[*Worker]map[uint64]*membership)}
}

// policyFor is the policy a new handle gets.
func (pt *portTable) policyFor(req *herdv1.ListenRequest) SchedulingPolicy {
	pol := policyFromProto(req.GetPolicy())
	if pol == SchedDefault {
		pt.p.mu.Lock()
		pol = pt.p.settings.policy
		pt.p.mu.Unlock()
	}
	if pol == SchedDefault {
		pol = SchedRoundRobin
	}
	udp := isPacketNetwork(req.GetNetwork())
	if udp && pol == SchedRoundRobin {
		pol = SchedShared // UDP is always shared, as in Node
	}
	if pol == SchedReusePort && (!reusePortBalances || req.GetNetwork() == "unix" || req.Fd != nil || req.GetFdName() != "") {
		pol = SchedShared
	}
	return pol
}

func isPacketNetwork(n string) bool { return n == "udp" || n == "udp4" || n == "udp6" }

// listen serves a worker's Listen: join the handle of the request's key,
// creating (binding) it first when needed. A refused request is also an
// error event about the worker (reported once the table is unlocked, so
// that the event's handlers may use the table).
// The handle's socket, when the worker gets one, is left in *fds for the
// reply to carry (the reply closes it).
func (pt *portTable) listen(ctx context.Context, req *herdv1.ListenRequest, out *[]int) (res *herdv1.ListenResponse, err error) {
	w, _ := WorkerFromContext(ctx)
	defer func() {
		if r := refusedListen(res); r != nil {
			// Through the user lane: ordered with the worker's events.
			w.ep.reportError(r.code(), controlServiceListenProcedure, fmt.Errorf("worker %d: %w", w.id, r))
		}
	}()
	switch req.GetNetwork() {
	case "tcp", "tcp4", "tcp6", "unix", "udp", "udp4", "udp6":
	default:
		return nil, Errorf(CodeInvalidArgument, "listen: unknown network %q", req.GetNetwork())
	}
	if req.GetListenerId() == 0 {
		return nil, Errorf(CodeInvalidArgument, "listen: no listener ID")
	}
	key := handleKey{network: req.GetNetwork(), address: req.GetAddress(), fd: -1, fdName: req.GetFdName(), index: req.GetIndex()}
	if req.Fd != nil {
		key.fd = req.GetFd()
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if w.disconnecting.Load() {
		return nil, Errorf(CodeUnavailable, "listen: worker %d is disconnecting", w.id)
	}
	if n := len(pt.byWorker[w]); n >= w.trust.maxListeners {
		return listenFailure(refuse(herdv1.ListenRefusal_LISTEN_REFUSAL_TOO_MANY_LISTENERS,
			"worker %d holds %d listeners, the most the primary allows (WithMaxListeners)", w.id, n)), nil
	}
	ms := pt.byWorker[w]
	if ms[req.GetListenerId()] != nil {
		return nil, Errorf(CodeAlreadyExists, "listen: listener %d already open", req.GetListenerId())
	}
	h := pt.handles[key]
	if h == nil {
		if h = pt.boundTo(key); h != nil && pt.isMember(w, h) {
			return bindFailure(syscall.EADDRINUSE), nil // its own port, again
		}
	}
	created := false
	if h == nil {
		if pt.conflicts(key) {
			return bindFailure(syscall.EADDRINUSE), nil
		}
		var err error
		h, err = pt.create(w, key, req)
		if err != nil {
			return listenFailure(err), nil
		}
		pt.handles[key] = h
		created = true
	}
	m := &membership{w: w, id: req.GetListenerId(), h: h}
	fds, err := h.join(m)
	if err != nil {
		if created && h.members() == 0 {
			delete(pt.handles, key)
			h.close()
		}
		return bindFailure(err), nil
	}
	if ms == nil {
		ms = make(map[uint64]*membership)
		pt.byWorker[w] = ms
	}
	ms[m.id] = m
	*out = fds
	b := h.base()
	res = &herdv1.ListenResponse{Key: b.id, Policy: b.policy.proto(), Address: b.address, ServerData: b.data}
	if rr, ok := h.(*rrHandle); ok {
		res.HandoffWindow = uint32(rr.window)
	}
	return res, nil
}

// conflicts reports whether another handle already holds the fixed port of
// key (same address, lower index): a worker listening twice on a fixed
// port gets EADDRINUSE, as in Node, even where SO_REUSEPORT would let the
// second bind succeed. Called with pt.mu held.
func (pt *portTable) conflicts(key handleKey) bool {
	if key.index == 0 || key.network == "unix" || key.fd >= 0 || key.fdName != "" {
		return false
	}
	_, port, err := net.SplitHostPort(key.address)
	if err != nil || port == "0" || port == "" {
		return false
	}
	for k := range pt.handles {
		if k.network == key.network && k.address == key.address && k.fd == key.fd && k.fdName == key.fdName && k.index != key.index {
			return true
		}
	}
	return false
}

// boundTo returns the handle already bound to key's concrete address, when
// it was created under another key: for ":0" (or another spelling of the
// address), and got that port. A worker that listens on the port another
// got from ":0" joins its handle instead of failing with EADDRINUSE (which
// Node does, for TCP and UDP). Called with pt.mu held.
func (pt *portTable) boundTo(key handleKey) portHandle {
	if key.network == "unix" || key.fd >= 0 || key.fdName != "" {
		return nil
	}
	host, port, err := net.SplitHostPort(key.address)
	if err != nil || port == "0" || port == "" {
		return nil
	}
	for k, h := range pt.handles {
		if k.network != key.network || k.fd >= 0 || k.fdName != "" {
			continue
		}
		b := h.base()
		if b.address == key.address {
			return h
		}
		khost, kport, err := net.SplitHostPort(k.address)
		if err != nil || kport != "0" || khost != host {
			continue
		}
		if _, bport, err := net.SplitHostPort(b.address); err == nil && bport == port {
			return h
		}
	}
	return nil
}

// isMember reports whether w holds a share of h. Called with pt.mu held.
func (pt *portTable) isMember(w *Worker, h portHandle) bool {
	for _, m := range pt.byWorker[w] {
		if m.h == h {
			return true
		}
	}
	return false
}

// bindFailure is the response to a Listen whose bind failed.
func bindFailure(err error) *herdv1.ListenResponse {
	return &herdv1.ListenResponse{Errno: int32(errnoOf(err)), Error: err.Error()}
}

// create binds a new handle for key, for worker w. Called with pt.mu held.
func (pt *portTable) create(w *Worker, key handleKey, req *herdv1.ListenRequest) (portHandle, error) {
	policy := pt.policyFor(req)
	b := handleBase{key: key, id: pt.nextKey.Add(1), policy: policy, network: req.GetNetwork()}
	b.data = make([]byte, 32)
	if _, err := rand.Read(b.data); err != nil {
		return nil, err
	}
	spec := &bindSpec{
		network:  req.GetNetwork(),
		address:  req.GetAddress(),
		backlog:  int(req.GetBacklog()),
		ipv6Only: req.GetIpv6Only(),
		unixMode: os.FileMode(req.GetUnixMode()).Perm(),

		deferAccept: req.GetDeferAccept(),
	}
	packet := isPacketNetwork(spec.network)
	var fdFile *os.File
	switch {
	case key.fd >= 0 || key.fdName != "":
		f, err := pt.shareableFD(key, spec.network)
		if err != nil {
			return nil, err
		}
		fdFile = f
	case spec.network == "unix" && !isAbstract(spec.address):
		sock, err := w.trust.openUnixSocket(spec.address, spec.unixMode)
		if err != nil {
			return nil, err
		}
		b.sock = sock
	}
	ctx := context.Background()
	switch {
	case policy == SchedReusePort:
		return newReusePortHandle(ctx, b, spec, packet)
	case packet:
		var pc net.PacketConn
		var err error
		if fdFile != nil {
			pc, err = net.FilePacketConn(fdFile)
			fdFile.Close()
		} else {
			pc, err = bindPacket(ctx, spec)
		}
		if err != nil {
			return nil, err
		}
		b.address = pc.LocalAddr().String()
		return newSharedHandle(b, pc.(syscall.Conn), pc)
	}
	var ln net.Listener
	var err error
	switch {
	case fdFile != nil:
		ln, err = net.FileListener(fdFile)
		fdFile.Close()
	case b.sock != nil:
		ln, err = b.sock.listen(ctx, spec.backlog)
	default:
		ln, err = bindListener(ctx, spec)
	}
	if err != nil {
		b.removeSocket()
		return nil, err
	}
	if b.sock != nil {
		b.address = b.sock.path
	} else {
		b.address = ln.Addr().String()
	}
	if policy == SchedRoundRobin {
		window := defaultHandoffWindow
		pt.p.mu.Lock()
		if pt.p.settings.handoffWindow > 0 {
			window = pt.p.settings.handoffWindow
		}
		pt.p.mu.Unlock()
		backlog := int(req.GetBacklog())
		if backlog <= 0 {
			backlog = defaultRRBacklog
		}
		h, err := newRRHandle(b, ln, min(window, maxHandoffBatch), backlog, pt.p.log)
		if err != nil {
			b.removeSocket()
			return nil, err
		}
		pt.p.mu.Lock()
		noRescue := pt.p.settings.handoffNoRescue
		pt.p.mu.Unlock()
		h.mu.Lock()
		h.noRescue = noRescue
		h.mu.Unlock()
		return h, nil
	}
	return newSharedHandle(b, ln.(syscall.Conn), ln)
}

// closeListener serves a worker's CloseListener: the worker left the
// handle; connections it returns go to the other workers.
func (pt *portTable) closeListener(ctx context.Context, req *herdv1.CloseListenerRequest) (*herdv1.CloseListenerResponse, error) {
	w, _ := WorkerFromContext(ctx)
	files := FilesFromContext(ctx)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	m := pt.byWorker[w][req.GetListenerId()]
	if m == nil {
		closeFiles(files)
		return &herdv1.CloseListenerResponse{}, nil
	}
	pt.leaveLocked(m, files)
	return &herdv1.CloseListenerResponse{}, nil
}

// leaveLocked removes m; the last member closes the handle.
func (pt *portTable) leaveLocked(m *membership, returned []*os.File) {
	ms := pt.byWorker[m.w]
	delete(ms, m.id)
	if len(ms) == 0 {
		delete(pt.byWorker, m.w)
	}
	m.h.leave(m, returned)
	if m.h.members() == 0 {
		key := m.h.base().key
		if pt.handles[key] == m.h {
			delete(pt.handles, key)
		}
		m.h.close()
	}
}

// stopRouting stops handing connections to a worker that is disconnecting
// (Node removes it from its handles at once); its listeners leave their
// handles when it closes them or its link ends.
func (pt *portTable) stopRouting(w *Worker) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for _, m := range pt.byWorker[w] {
		m.h.stop(m)
	}
}

// startRouting hands w the round-robin connections waiting for it, once a
// pool counts it ready (Worker.unready).
func (pt *portTable) startRouting(w *Worker) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for _, m := range pt.byWorker[w] {
		if rr, ok := m.h.(*rrHandle); ok {
			rr.redispatch()
		}
	}
}

// dropWorker removes a worker whose link ended from every handle.
func (pt *portTable) dropWorker(w *Worker) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for _, m := range pt.byWorker[w] {
		m.linkEnded = true
		pt.leaveLocked(m, nil)
	}
}

// accepted handles the worker's Accepted reports, on its link's reader
// (see rrHandle.accepted), in order with everything else it sent.
func (w *Worker) accepted(req *herdv1.AcceptedRequest) {
	pt := w.primary.ports
	pt.mu.Lock()
	m := pt.byWorker[w][req.GetListenerId()]
	pt.mu.Unlock()
	if m == nil || m.rr == nil {
		return // a listener that left its handle, or not round robin
	}
	m.h.(*rrHandle).accepted(m.rr, req)
}

// dupSocket duplicates a socket's descriptor (close-on-exec) for sending.
func dupSocket(c syscall.Conn) (int, error) {
	fd, err := dupConn(c)
	if err != nil {
		return -1, os.NewSyscallError("dup", err)
	}
	return fd, nil
}

func (b *handleBase) String() string {
	return fmt.Sprintf("%s %s (%s, handle %s)", b.network, b.address, b.policy, strconv.FormatUint(b.id, 10))
}
