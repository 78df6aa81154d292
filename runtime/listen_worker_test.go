//go:build unix

package runtime_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// ctlWorker is the listen tests' worker: TestService, with Listen,
// CloseListener and OpenGate serving HTTP (or echoing datagrams) on what it
// listens on.
type ctlWorker struct {
	*testService
	self      *runtime.Self
	fresh     freshConns
	open      atomic.Int64 // connections the HTTP servers hold open
	mu        sync.Mutex
	listeners []io.Closer
	servers   []*http.Server
	gates     map[int]chan struct{} // gated listeners' gates, by listener index
}

// gatedListener lets its server's Accept through only as often as the
// test opens the gate ("gate N K"): a server that stops accepting, with
// the listener (and its credit) underneath.
type gatedListener struct {
	net.Listener
	gate chan struct{}
	done chan struct{}
}

func (g *gatedListener) Accept() (net.Conn, error) {
	select {
	case <-g.gate:
	case <-g.done:
		return nil, net.ErrClosed
	}
	return g.Listener.Accept()
}

// fanInListener serves the connections that several goroutines accept
// from one listener: a server with k accept loops.
type fanInListener struct {
	net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newFanIn(ln net.Listener, k int) *fanInListener {
	f := &fanInListener{Listener: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	for range k {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					f.Close()
					return
				}
				select {
				case f.conns <- c:
				case <-f.done:
					c.Close()
					return
				}
			}
		}()
	}
	return f
}

func (f *fanInListener) Accept() (net.Conn, error) {
	select {
	case c := <-f.conns:
		return c, nil
	case <-f.done:
		return nil, net.ErrClosed
	}
}

func (f *fanInListener) Close() error {
	f.once.Do(func() { close(f.done) })
	return f.Listener.Close()
}

func (g *gatedListener) Close() error {
	select {
	case <-g.done:
	default:
		close(g.done)
	}
	return g.Listener.Close()
}

// listenWorkerMain is the listen tests' worker (role "ctl"): the tests
// drive it through TestService (ctlDo in listen_test.go).
func listenWorkerMain() int {
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		return 10
	}
	cw := &ctlWorker{self: self}
	cw.testService = &testService{self: self, selfPeer: testv1herd.NewTestServiceClient(self), connections: cw.open.Load}
	if err := testv1herd.RegisterTestServiceHandler(self, cw); err != nil {
		fmt.Fprintln(os.Stderr, "register:", err)
		return 11
	}
	self.OnDisconnect(func(ctx context.Context) error {
		cw.mu.Lock()
		srvs := append([]*http.Server(nil), cw.servers...)
		cw.mu.Unlock()
		// The listeners are closed: wait until the connections accepted
		// last have had their request read (net/http drops a request it
		// reads after Shutdown has started), then shut down.
		cw.fresh.wait(ctx)
		for _, s := range srvs {
			s.Shutdown(ctx)
		}
		return nil
	})
	if err := self.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "Start:", err)
		return 12
	}
	<-self.Done()
	select {}
}

// errName names the errno a listen error matches.
func errName(err error) string {
	for name, e := range refusals {
		if errors.Is(err, e) {
			return name
		}
	}
	for _, e := range []syscall.Errno{syscall.EADDRINUSE, syscall.EACCES, syscall.EADDRNOTAVAIL, syscall.ENOENT} {
		if errors.Is(err, e) {
			return map[syscall.Errno]string{syscall.EADDRINUSE: "EADDRINUSE", syscall.EACCES: "EACCES",
				syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL", syscall.ENOENT: "ENOENT"}[e]
		}
	}
	return "other"
}

// listenOptions turns a ListenRequest into runtime.Listen's options.
func listenOptions(req *testv1.ListenRequest) ([]runtime.ListenOption, error) {
	var opts []runtime.ListenOption
	if name := req.GetPolicy(); name != "" {
		pol, err := runtime.ParseSchedulingPolicy(name)
		if err != nil {
			return nil, runtime.Errorf(runtime.CodeInvalidArgument, "policy: %v", err)
		}
		opts = append(opts, runtime.WithSchedulingPolicy(pol))
	}
	if n := req.GetBacklog(); n != 0 {
		opts = append(opts, runtime.WithBacklog(int(n)))
	}
	if req.GetExclusive() {
		opts = append(opts, runtime.WithExclusive())
	}
	if req.GetUseFd() {
		opts = append(opts, runtime.WithListenFD(int(req.GetFd())))
	}
	if name := req.GetFdName(); name != "" {
		opts = append(opts, runtime.WithListenFDName(name))
	}
	if m := req.GetUnixMode(); m != 0 {
		opts = append(opts, runtime.WithUnixMode(os.FileMode(m)))
	}
	if req.GetIpv6Only() {
		opts = append(opts, runtime.WithIPv6Only())
	}
	if n := req.GetMaxConnections(); n != 0 {
		opts = append(opts, runtime.WithMaxConnections(int(n)))
	}
	if n := req.GetAcceptAhead(); n != 0 {
		opts = append(opts, runtime.WithAcceptAhead(int(n)))
	}
	if req.GetDeferAccept() {
		opts = append(opts, runtime.WithDeferAccept())
	}
	return opts, nil
}

// listenRefused is the answer to a listen that failed.
func listenRefused(name string, err error) *testv1.ListenResponse {
	return &testv1.ListenResponse{ErrorName: name, Error: err.Error()}
}

// Listen listens and serves HTTP answering "w<ID>" (with ?sleep=D, after
// D), or for a packet listener echoes each datagram after "w<ID>:".
func (cw *ctlWorker) Listen(ctx context.Context, req *testv1.ListenRequest) (*testv1.ListenResponse, error) {
	opts, err := listenOptions(req)
	if err != nil {
		return nil, err
	}
	id := cw.self.ID()
	if req.GetPacket() {
		pc, err := runtime.ListenPacket(ctx, req.GetNetwork(), req.GetAddress(), opts...)
		if err != nil {
			return listenRefused(errName(err), err), nil
		}
		pol := policyName(pc)
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte(fmt.Sprintf("w%d:", id)), buf[:n]...), from)
			}
		}()
		cw.mu.Lock()
		n := len(cw.listeners)
		cw.listeners = append(cw.listeners, pc)
		cw.mu.Unlock()
		return &testv1.ListenResponse{Index: uint32(n), Address: pc.LocalAddr().String(), Policy: pol}, nil
	}
	ln, err := runtime.Listen(ctx, req.GetNetwork(), req.GetAddress(), opts...)
	if err != nil {
		return listenRefused(errName(err), err), nil
	}
	pol := policyName(ln)
	srv := &http.Server{ConnState: cw.connState, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := r.URL.Query().Get("sleep"); d != "" {
			t, _ := time.ParseDuration(d)
			time.Sleep(t)
		}
		fmt.Fprintf(w, "w%d", id)
	})}
	served := ln
	if req.GetTls() {
		cfg, err := testTLSConfig()
		if err != nil {
			ln.Close()
			return listenRefused("other", err), nil
		}
		if err := runtime.ShareTLSSessionTickets(ln, cfg); err != nil {
			ln.Close()
			return listenRefused("other", err), nil
		}
		served = tls.NewListener(ln, cfg)
	}
	if n := req.GetAcceptors(); n > 0 {
		served = newFanIn(served, int(n))
	}
	var gate chan struct{}
	if req.GetGate() {
		gate = make(chan struct{}, 1000)
		served = &gatedListener{Listener: served, gate: gate, done: make(chan struct{})}
	}
	go srv.Serve(served)
	cw.mu.Lock()
	n := len(cw.listeners)
	if gate != nil {
		if cw.gates == nil {
			cw.gates = make(map[int]chan struct{})
		}
		cw.gates[n] = gate
	}
	cw.listeners = append(cw.listeners, ln)
	cw.servers = append(cw.servers, srv)
	cw.mu.Unlock()
	return &testv1.ListenResponse{Index: uint32(n), Address: ln.Addr().String(), Policy: pol}, nil
}

// CloseListener closes a listener Listen made.
func (cw *ctlWorker) CloseListener(ctx context.Context, req *testv1.CloseListenerRequest) (*testv1.CloseListenerResponse, error) {
	cw.mu.Lock()
	if int(req.GetIndex()) >= len(cw.listeners) {
		cw.mu.Unlock()
		return nil, runtime.Errorf(runtime.CodeInvalidArgument, "no listener %d", req.GetIndex())
	}
	c := cw.listeners[req.GetIndex()]
	cw.mu.Unlock()
	if err := c.Close(); err != nil {
		return nil, err
	}
	return &testv1.CloseListenerResponse{}, nil
}

// OpenGate lets a gated listener's server accept count more times.
func (cw *ctlWorker) OpenGate(ctx context.Context, req *testv1.OpenGateRequest) (*testv1.OpenGateResponse, error) {
	cw.mu.Lock()
	gate := cw.gates[int(req.GetIndex())]
	cw.mu.Unlock()
	if gate == nil {
		return nil, runtime.Errorf(runtime.CodeInvalidArgument, "listener %d is not gated", req.GetIndex())
	}
	for range req.GetCount() {
		gate <- struct{}{}
	}
	return &testv1.OpenGateResponse{}, nil
}

// connState tracks the HTTP servers' connections.
func (cw *ctlWorker) connState(c net.Conn, st http.ConnState) {
	cw.fresh.track(c, st)
	switch st {
	case http.StateNew:
		cw.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		cw.open.Add(-1)
	}
}

// policyName is the policy ListenerPolicy reports for l, or "local" when
// it reports none.
func policyName(l any) string {
	pol, ok := runtime.ListenerPolicy(l)
	if !ok {
		return "local"
	}
	return pol.String()
}

// testTLSConfig loads the certificate the test passed in the environment.
func testTLSConfig() (*tls.Config, error) {
	cert, err := tls.X509KeyPair([]byte(os.Getenv("HERD_TEST_CERT")), []byte(os.Getenv("HERD_TEST_KEY")))
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}

// freshConns tracks the connections an http.Server has accepted whose
// first request it has not started reading (StateNew).
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
	none  chan struct{} // closed when conns becomes empty
}

func (f *freshConns) track(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		f.conns = make(map[net.Conn]bool)
	}
	if st == http.StateNew {
		f.conns[c] = true
		return
	}
	if f.conns[c] {
		delete(f.conns, c)
		if len(f.conns) == 0 && f.none != nil {
			close(f.none)
			f.none = nil
		}
	}
}

// wait waits until no connection is new, or ctx ends.
func (f *freshConns) wait(ctx context.Context) {
	f.mu.Lock()
	if len(f.conns) == 0 {
		f.mu.Unlock()
		return
	}
	if f.none == nil {
		f.none = make(chan struct{})
	}
	none := f.none
	f.mu.Unlock()
	select {
	case <-none:
	case <-ctx.Done():
	}
}
