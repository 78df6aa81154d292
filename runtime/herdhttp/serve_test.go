package herdhttp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdhttp"
	"github.com/herd-go/herd/runtime/herdtest"
)

func TestMain(m *testing.M) {
	herdtest.Main(m, herdtest.Roles{"web": webWorker})
}

const waitLimit = 60 * time.Second

var _ herdhttp.Worker = (*runtime.Self)(nil)

// fakeWorker plays the runtime's side of a disconnect: close the worker's
// listener, then run its drain hooks.
type fakeWorker struct {
	mu    sync.Mutex
	hooks []func(context.Context) error
}

func (f *fakeWorker) OnDisconnect(h func(context.Context) error) {
	f.mu.Lock()
	f.hooks = append(f.hooks, h)
	f.mu.Unlock()
}

func (f *fakeWorker) disconnect(ctx context.Context, ln net.Listener) error {
	ln.Close()
	f.mu.Lock()
	hooks := append([]func(context.Context) error(nil), f.hooks...)
	f.mu.Unlock()
	var errs []error
	for _, h := range hooks {
		errs = append(errs, h(ctx))
	}
	return errors.Join(errs...)
}

// notifyListener sends on closed when it is first closed. Serve's drain
// closes it as it starts when ctx ends (a disconnect closes the listener
// before the hook runs, and srv.Serve closes it too as it returns).
type notifyListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *notifyListener) Close() error {
	l.once.Do(func() { l.closed <- struct{}{} })
	return l.Listener.Close()
}

// server is a Serve under test, on a loopback listener.
type server struct {
	t      *testing.T
	ln     *notifyListener
	w      *fakeWorker
	cancel context.CancelFunc
	served chan error
	states chan http.ConnState // the user's ConnState hook still runs

	returned bool // Serve's result was taken
}

func startServer(t *testing.T, h http.Handler, opts ...herdhttp.Option) *server {
	t.Helper()
	herdtest.CheckLeaks(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, ln: &notifyListener{Listener: raw, closed: make(chan struct{}, 1)}, w: &fakeWorker{},
		served: make(chan error, 1), states: make(chan http.ConnState, 1000)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, st http.ConnState) {
		select {
		case s.states <- st:
		default:
		}
	}}
	go func() { s.served <- herdhttp.Serve(ctx, s.w, srv, s.ln, opts...) }()
	t.Cleanup(func() {
		cancel()
		if !s.returned {
			s.waitServed()
		}
	})
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

// drain starts a drain as a disconnect would, and returns the hook's
// result on the channel. With probe it returns once the drain has started:
// a keep-alive connection opened before it has then been answered with
// "Connection: close" (the listener closing says nothing: srv.Serve closes
// it too as it returns).
func (s *server) drain(ctx context.Context, probe bool) chan error {
	s.t.Helper()
	var p *client
	if probe {
		p = &client{addr: s.addr(), keepAlive: true}
		defer p.drop()
		if _, err := p.get("/"); err != nil {
			s.t.Fatalf("probe: %v", err)
		}
	}
	done := make(chan error, 1)
	// The runtime's close of the listener, before the hooks.
	go func() { done <- s.w.disconnect(ctx, s.ln.Listener) }()
	if probe {
		herdtest.WaitUntil(s.t, "the drain to start", func() bool {
			a, err := p.get("/")
			if err != nil {
				s.t.Fatalf("probe: %v", err)
			}
			return a.close
		})
	}
	return done
}

func (s *server) waitState(want http.ConnState) {
	s.t.Helper()
	for {
		if st := herdtest.Receive(s.t, s.states, "connection state "+want.String()); st == want {
			return
		}
	}
}

func (s *server) waitServed() error {
	s.t.Helper()
	s.returned = true
	return herdtest.Receive(s.t, s.served, "Serve to return")
}

var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") })

// TestServeKeepAliveClientsEndCleanly: clients that send request after
// request on keep-alive connections while the worker disconnects each get
// every request answered, the last one with "Connection: close"; the
// drain and Serve end with nil.
func TestServeKeepAliveClientsEndCleanly(t *testing.T) {
	s := startServer(t, hello)
	const clients = 8
	started := make(chan struct{}, clients)
	type outcome struct {
		answered int
		err      error
	}
	outcomes := make(chan outcome, clients)
	for range clients {
		go func() {
			c := &client{addr: s.addr(), keepAlive: true}
			defer c.drop()
			var o outcome
			for c.closes == 0 {
				if _, err := c.get("/"); err != nil {
					o.err = err
					break
				}
				if o.answered++; o.answered == 1 {
					started <- struct{}{}
				}
			}
			outcomes <- o
		}()
	}
	for range clients {
		herdtest.Receive(t, started, "a first answer")
	}
	done := s.drain(context.Background(), false)
	total := 0
	for range clients {
		o := herdtest.Receive(t, outcomes, "a client to end")
		if o.err != nil {
			t.Errorf("a client's request failed after %d answers: %v", o.answered, o.err)
		}
		total += o.answered
	}
	if err := herdtest.Receive(t, done, "the drain"); err != nil {
		t.Errorf("drain: %v", err)
	}
	if err := s.waitServed(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	t.Logf("%d requests answered on %d keep-alive connections", total, clients)
}

// TestServeAnswersRequestsReadAfterTheDrainStarted: the requests that
// net/http's Shutdown drops (the first one of a connection accepted before
// the drain, the next one of an idle keep-alive connection, both read
// after the drain started) are answered, with "Connection: close".
func TestServeAnswersRequestsReadAfterTheDrainStarted(t *testing.T) {
	s := startServer(t, hello, herdhttp.WithIdleGrace(time.Hour))
	// A new connection, accepted, no request yet.
	fresh := &client{addr: s.addr(), keepAlive: true}
	defer fresh.drop()
	if err := fresh.dial(); err != nil {
		t.Fatal(err)
	}
	s.waitState(http.StateNew)
	// An idle keep-alive connection.
	idle := &client{addr: s.addr(), keepAlive: true}
	defer idle.drop()
	if a, err := idle.get("/"); err != nil || a.close {
		t.Fatalf("first request: %+v %v", a, err)
	}
	done := s.drain(context.Background(), true)
	for name, c := range map[string]*client{"new connection": fresh, "idle keep-alive connection": idle} {
		a, err := c.get("/")
		switch {
		case err != nil:
			t.Errorf("%s: request read after the drain started: %v", name, err)
		case !a.close:
			t.Errorf("%s: answer without Connection: close", name)
		}
	}
	if err := herdtest.Receive(t, done, "the drain"); err != nil {
		t.Errorf("drain: %v", err)
	}
	if err := s.waitServed(); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestServeClosesIdleConnectionBetweenRequests: a keep-alive connection
// left idle through the grace is closed, cleanly (EOF, no reset, no stray
// bytes), and the drain ends.
func TestServeClosesIdleConnectionBetweenRequests(t *testing.T) {
	s := startServer(t, hello, herdhttp.WithIdleGrace(time.Millisecond))
	c := &client{addr: s.addr(), keepAlive: true}
	defer c.drop()
	if _, err := c.get("/"); err != nil {
		t.Fatal(err)
	}
	done := s.drain(context.Background(), false)
	if err := herdtest.Receive(t, done, "the drain"); err != nil {
		t.Errorf("drain: %v", err)
	}
	c.conn.SetReadDeadline(time.Now().Add(waitLimit))
	n, err := c.br.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("idle connection after the drain: read %d bytes, %v; want a clean EOF", n, err)
	}
	if err := s.waitServed(); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestServeBusyConnectionEndsAfterItsResponse: a request in flight when
// the drain starts is answered; the client's next request on that
// connection too, with "Connection: close".
func TestServeBusyConnectionEndsAfterItsResponse(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{}, 1)
	s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			inHandler <- struct{}{}
			<-release
		}
		io.WriteString(w, "done\n")
	}), herdhttp.WithIdleGrace(time.Hour))
	c := &client{addr: s.addr(), keepAlive: true}
	defer c.drop()
	slow := make(chan error, 1)
	go func() {
		_, err := c.get("/slow")
		slow <- err
	}()
	herdtest.Receive(t, inHandler, "the slow request in its handler")
	done := s.drain(context.Background(), true)
	close(release)
	if err := herdtest.Receive(t, slow, "the slow answer"); err != nil {
		t.Fatalf("request in flight: %v", err)
	}
	if c.conn != nil {
		a, err := c.get("/")
		if err != nil || !a.close {
			t.Errorf("next request on the busy connection: %+v %v; want an answer with Connection: close", a, err)
		}
	}
	if err := herdtest.Receive(t, done, "the drain"); err != nil {
		t.Errorf("drain: %v", err)
	}
	if err := s.waitServed(); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestServeDrainDeadline: a handler that never ends holds the drain until
// the disconnect's deadline; then its connection is closed and the hook
// and Serve report the deadline.
func TestServeDrainDeadline(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	inHandler := make(chan struct{}, 1)
	s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inHandler <- struct{}{}
		select {
		case <-stuck:
		case <-r.Context().Done():
		}
	}))
	c := &client{addr: s.addr(), keepAlive: true}
	defer c.drop()
	failed := make(chan error, 1)
	go func() {
		_, err := c.get("/")
		failed <- err
	}()
	herdtest.Receive(t, inHandler, "the request in its handler")
	ctx, cancel := context.WithCancel(context.Background())
	done := s.drain(ctx, false)
	cancel() // the disconnect's deadline
	if err := herdtest.Receive(t, done, "the drain"); !errors.Is(err, context.Canceled) {
		t.Errorf("drain: %v, want the context's error", err)
	}
	if err := s.waitServed(); !errors.Is(err, context.Canceled) {
		t.Errorf("Serve: %v, want the context's error", err)
	}
	if err := herdtest.Receive(t, failed, "the stuck request to fail"); err == nil {
		t.Error("the stuck request was answered")
	}
}

// TestServeContextEndsDrain: outside a cluster (no Worker), ctx ending
// drains the same way.
func TestServeContextEndsDrain(t *testing.T) {
	herdtest.CheckLeaks(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &notifyListener{Listener: raw, closed: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- herdhttp.Serve(ctx, nil, &http.Server{Handler: hello}, ln, herdhttp.WithIdleGrace(time.Hour))
	}()
	c := &client{addr: ln.Addr().String(), keepAlive: true}
	defer c.drop()
	if _, err := c.get("/"); err != nil {
		t.Fatal(err)
	}
	cancel()
	herdtest.Receive(t, ln.closed, "the listener to close")
	a, err := c.get("/")
	if err != nil || !a.close {
		t.Errorf("request after ctx ended: %+v %v; want an answer with Connection: close", a, err)
	}
	if err := herdtest.Receive(t, served, "Serve to return"); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestServeTLS: the connections of a TLS listener, which Serve cannot
// wrap, drain the same way: the next request of a keep-alive connection is
// answered with "Connection: close"; an idle one is closed after the grace
// (with TLS's close_notify: a clean EOF).
func TestServeTLS(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cfg := ts.TLS.Clone()
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	ts.Close()
	cfg.NextProtos = []string{"http/1.1"}
	clientTLS := &tls.Config{RootCAs: roots, ServerName: "example.com"}
	for _, idle := range []bool{false, true} {
		t.Run(map[bool]string{false: "busy", true: "idle"}[idle], func(t *testing.T) {
			herdtest.CheckLeaks(t)
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &notifyListener{Listener: tls.NewListener(raw, cfg), closed: make(chan struct{}, 1)}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			grace := time.Hour
			if idle {
				grace = time.Millisecond
			}
			served := make(chan error, 1)
			go func() {
				served <- herdhttp.Serve(ctx, nil, &http.Server{Handler: hello}, ln, herdhttp.WithIdleGrace(grace))
			}()
			c := &client{addr: raw.Addr().String(), keepAlive: true, tls: clientTLS}
			defer c.drop()
			if _, err := c.get("/"); err != nil {
				t.Fatal(err)
			}
			cancel()
			herdtest.Receive(t, ln.closed, "the listener to close")
			if idle {
				c.conn.SetReadDeadline(time.Now().Add(waitLimit))
				if n, err := c.br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
					t.Errorf("idle connection after the drain: read %d bytes, %v; want a clean EOF", n, err)
				}
			} else if a, err := c.get("/"); err != nil || !a.close {
				t.Errorf("request after the drain started: %+v %v; want an answer with Connection: close", a, err)
			}
			if err := herdtest.Receive(t, served, "Serve to return"); err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
}

// TestServeAcceptError: an error of the listener other than its closing
// is Serve's error.
func TestServeAcceptError(t *testing.T) {
	boom := errors.New("boom")
	err := herdhttp.Serve(context.Background(), nil, &http.Server{}, failingListener{boom})
	if !errors.Is(err, boom) {
		t.Errorf("Serve: %v, want %v", err, boom)
	}
}

type failingListener struct{ err error }

func (l failingListener) Accept() (net.Conn, error) { return nil, l.err }
func (l failingListener) Close() error              { return nil }
func (l failingListener) Addr() net.Addr            { return &net.TCPAddr{} }

// webWorker is the cluster tests' worker: hello from worker ID, served
// with herdhttp.Serve on a shared loopback port.
func webWorker() int {
	ctx := context.Background()
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 10
	}
	if err := self.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 12
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 13
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from worker %d\n", self.ID())
	})}
	// A grace far longer than any stall of the test's clients on a busy
	// machine: the clients below never leave a connection idle on purpose.
	if err := herdhttp.Serve(ctx, self, srv, ln, herdhttp.WithIdleGrace(10*time.Second)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 14
	}
	<-self.Done()
	return 0
}
