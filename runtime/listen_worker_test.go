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
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
)

const doProcedure = "/herdtest.Listen/Do"

type ctlWorker struct {
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

// listenWorkerMain is the listen tests' worker (role "ctl"). The primary
// drives it with commands (listen, udp, close, stat) sent to doProcedure.
func listenWorkerMain() int {
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		return 10
	}
	cw := &ctlWorker{self: self}
	self.Register(
		runtime.NewUnaryHandler(doProcedure, func(ctx context.Context, req *herdv1.ErrorEvent) (*herdv1.ErrorEvent, error) {
			return &herdv1.ErrorEvent{Message: cw.do(ctx, req.GetMessage())}, nil
		}),
	)
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

func (cw *ctlWorker) do(ctx context.Context, cmd string) string {
	f := strings.Fields(cmd)
	var opts []runtime.ListenOption
	tlsOn, gated, acceptors := false, false, 0
	if len(f) > 3 {
		for _, o := range f[3:] {
			k, v, _ := strings.Cut(o, "=")
			switch k {
			case "policy":
				p, _ := runtime.ParseSchedulingPolicy(v)
				opts = append(opts, runtime.WithSchedulingPolicy(p))
			case "backlog":
				n, _ := strconv.Atoi(v)
				opts = append(opts, runtime.WithBacklog(n))
			case "exclusive":
				opts = append(opts, runtime.WithExclusive())
			case "fd":
				n, _ := strconv.Atoi(v)
				opts = append(opts, runtime.WithListenFD(n))
			case "fdname":
				opts = append(opts, runtime.WithListenFDName(v))
			case "mode":
				n, _ := strconv.ParseUint(v, 8, 32)
				opts = append(opts, runtime.WithUnixMode(os.FileMode(n)))
			case "v6only":
				opts = append(opts, runtime.WithIPv6Only())
			case "maxconns":
				n, _ := strconv.Atoi(v)
				opts = append(opts, runtime.WithMaxConnections(n))
			case "tls":
				tlsOn = true
			case "gate":
				gated = true
			case "acceptors":
				acceptors, _ = strconv.Atoi(v)
			}
		}
	}
	id := cw.self.ID()
	switch f[0] {
	case "listen":
		ln, err := runtime.Listen(ctx, f[1], f[2], opts...)
		if err != nil {
			return "err " + errName(err) + " " + err.Error()
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
		if tlsOn {
			cfg, err := testTLSConfig()
			if err != nil {
				ln.Close()
				return "err other " + err.Error()
			}
			if err := runtime.ShareTLSSessionTickets(ln, cfg); err != nil {
				ln.Close()
				return "err other " + err.Error()
			}
			served = tls.NewListener(ln, cfg)
		}
		if acceptors > 0 {
			served = newFanIn(served, acceptors)
		}
		var gate chan struct{}
		if gated {
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
		return fmt.Sprintf("ok %d %s %s", n, ln.Addr(), pol)
	case "udp":
		pc, err := runtime.ListenPacket(ctx, f[1], f[2], opts...)
		if err != nil {
			return "err " + errName(err) + " " + err.Error()
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
		return fmt.Sprintf("ok %d %s %s", n, pc.LocalAddr(), pol)
	case "close":
		n, _ := strconv.Atoi(f[1])
		cw.mu.Lock()
		c := cw.listeners[n]
		cw.mu.Unlock()
		if err := c.Close(); err != nil {
			return "err " + err.Error()
		}
		return "ok"
	case "conns":
		return fmt.Sprint(cw.open.Load())
	case "gate":
		n, _ := strconv.Atoi(f[1])
		k, _ := strconv.Atoi(f[2])
		cw.mu.Lock()
		gate := cw.gates[n]
		cw.mu.Unlock()
		for range k {
			gate <- struct{}{}
		}
		return "ok"
	case "stat":
		ents, _ := os.ReadDir("/proc/self/fd")
		return fmt.Sprintf("fds=%d goroutines=%d", len(ents), goruntime.NumGoroutine())
	}
	if fn := ctlCommands[f[0]]; fn != nil {
		return fn(f[1:])
	}
	return "err unknown command " + cmd
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
