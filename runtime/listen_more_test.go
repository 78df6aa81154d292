//go:build unix

package runtime_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime"
)

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// refused waits until connections to addr are refused.
func refused(t *testing.T, network, addr string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err != nil && errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return
		}
		if c != nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections (%v)", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestListenTwiceCloseAndRelisten(t *testing.T) {
	for _, pol := range policies {
		t.Run(pol, func(t *testing.T) {
			c := newListenCluster(t)
			ws := c.start(2)
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			cmd := "listen tcp " + addr + " policy=" + pol
			c.listen(ws[0], cmd)
			if got := c.do(ws[0], cmd); !strings.HasPrefix(got, "err EADDRINUSE") {
				t.Fatalf("second listen on a fixed port in one worker: %s", got)
			}
			c.listen(ws[1], cmd) // another worker joins
			if seen := collect(t, "tcp", addr, 10); seen["w1"]+seen["w2"] != 10 {
				t.Fatalf("answers %v", seen)
			}
			// Close and listen again.
			if got := c.do(ws[0], "close 0"); got != "ok" {
				t.Fatal(got)
			}
			if seen := collect(t, "tcp", addr, 6); seen["w2"] != 6 {
				t.Errorf("after worker 1 closed: %v", seen)
			}
			c.listen(ws[0], cmd)
			seen := collect(t, "tcp", addr, 10)
			if seen["w1"]+seen["w2"] != 10 || (pol == "rr" && !rrBalanced(seen, 10, 2)) {
				t.Errorf("after worker 1 listened again: %v", seen)
			}
			// The last worker leaving closes the socket.
			c.do(ws[0], "close 1")
			c.do(ws[1], "close 0")
			refused(t, "tcp", addr)
			// And the address can be listened on again.
			c.listen(ws[1], cmd)
			if got := mustGet(t, "tcp", addr); got != "w2" {
				t.Errorf("after re-listen: %s", got)
			}
		})
	}
}

func TestListenBindErrors(t *testing.T) {
	for _, pol := range policies {
		t.Run(pol, func(t *testing.T) {
			c := newListenCluster(t)
			ws := c.start(1)
			// A port held by another socket (not SO_REUSEPORT).
			holder, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := holder.Addr().String()
			cmd := "listen tcp " + addr + " policy=" + pol
			if got := c.do(ws[0], cmd); !strings.HasPrefix(got, "err EADDRINUSE") {
				t.Fatalf("port in use: %s", got)
			}
			// A failed key can be retried once the port is free.
			holder.Close()
			c.listen(ws[0], cmd)
			if got := mustGet(t, "tcp", addr); got != "w1" {
				t.Errorf("after retry: %s", got)
			}
			// An address that is not local.
			if got := c.do(ws[0], "listen tcp 192.0.2.1:0 policy="+pol); !strings.HasPrefix(got, "err EADDRNOTAVAIL") {
				t.Errorf("foreign address: %s", got)
			}
			// A privileged port, unless we are root.
			if os.Geteuid() != 0 {
				if got := c.do(ws[0], "listen tcp 127.0.0.1:1 policy="+pol); !strings.HasPrefix(got, "err EACCES") {
					t.Errorf("privileged port: %s", got)
				}
			}
		})
	}
}

func TestListenUnixSocket(t *testing.T) {
	// The workers run in a directory whose absolute path is too long for
	// a socket address; relative to the primary's directory it is short.
	root := t.TempDir()
	t.Chdir(root)
	deep := filepath.Join(root, strings.Repeat("d", 40), strings.Repeat("e", 40))
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(deep, "s.sock")
	rel, _ := filepath.Rel(root, abs)
	if len(abs) <= 108 || len(rel) >= 108 {
		t.Fatalf("paths of %d and %d bytes: want more and less than 108", len(abs), len(rel))
	}
	for _, pol := range []string{"rr", "shared"} {
		t.Run(pol, func(t *testing.T) {
			c := newListenCluster(t, runtime.WithDir(deep))
			ws := c.start(2)
			for _, w := range ws {
				a, _ := c.listen(w, "listen unix s.sock mode=0600 policy="+pol)
				if a != abs {
					t.Errorf("address %s, want %s", a, abs)
				}
			}
			fi, err := os.Stat(rel)
			if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
				t.Fatalf("socket file: %v %v", fi.Mode(), err)
			}
			if seen := collect(t, "unix", rel, 10); seen["w1"]+seen["w2"] != 10 || (pol == "rr" && !rrBalanced(seen, 10, 2)) {
				t.Errorf("answers %v", seen)
			}
			c.do(ws[0], "close 0")
			if _, err := os.Stat(rel); err != nil {
				t.Errorf("socket file gone while worker 2 listens: %v", err)
			}
			c.do(ws[1], "close 0")
			deadline := time.Now().Add(waitLimit)
			for {
				if _, err := os.Stat(rel); errors.Is(err, os.ErrNotExist) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("socket file not removed when the handle closed")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

func TestListenPacketUDP(t *testing.T) {
	for _, pol := range []string{"shared", "reuseport", "rr"} {
		t.Run(pol, func(t *testing.T) {
			c := newListenCluster(t)
			ws := c.start(2)
			var addrs []string
			for _, w := range ws {
				got := c.do(w, "udp udp 127.0.0.1:0 policy="+pol)
				f := strings.Fields(got)
				if len(f) != 4 || f[0] != "ok" {
					t.Fatal(got)
				}
				if f[3] == "rr" {
					t.Errorf("UDP got policy %s", f[3])
				}
				addrs = append(addrs, f[2])
			}
			if addrs[0] != addrs[1] {
				t.Fatalf("UDP ports differ: %v", addrs)
			}
			raddr, _ := net.ResolveUDPAddr("udp", addrs[0])
			seen := map[string]int{}
			for i := range 20 {
				conn, err := net.DialUDP("udp", nil, raddr)
				if err != nil {
					t.Fatal(err)
				}
				msg := fmt.Sprintf("m%d", i)
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 64)
				n, err := conn.Read(buf)
				conn.Close()
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				who, body, _ := strings.Cut(string(buf[:n]), ":")
				if body != msg {
					t.Fatalf("reply %q to %q", buf[:n], msg)
				}
				seen[who]++
			}
			if seen["w1"]+seen["w2"] != 20 {
				t.Errorf("replies %v", seen)
			}
		})
	}
}

// testCert makes a self-signed certificate for 127.0.0.1, as PEM.
func testCert(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

func TestListenTLSResumptionAcrossWorkers(t *testing.T) {
	certPEM, keyPEM := testCert(t)
	for _, pol := range policies {
		t.Run(pol, func(t *testing.T) {
			c := newListenCluster(t, runtime.WithEnv("HERD_TEST_CERT="+certPEM, "HERD_TEST_KEY="+keyPEM))
			ws := c.start(2)
			var addr string
			for _, w := range ws {
				addr, _ = c.listen(w, "listen tcp 127.0.0.1:0 tls policy="+pol)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM([]byte(certPEM))
			tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
				RootCAs: pool, ClientSessionCache: tls.NewLRUClientSessionCache(8)}}
			client := &http.Client{Transport: tr, Timeout: waitLimit}
			seen := map[string]int{}
			resumedOn := map[string]bool{}
			for i := 0; i < 40 && !(resumedOn["w1"] && resumedOn["w2"]); i++ {
				resp, err := client.Get("https://" + addr + "/")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				seen[string(b)]++
				if i > 0 && !resp.TLS.DidResume {
					t.Fatalf("connection %d (served by %s, after %v) did not resume", i, b, seen)
				}
				if resp.TLS.DidResume {
					resumedOn[string(b)] = true
				}
			}
			if !resumedOn["w1"] || !resumedOn["w2"] {
				t.Errorf("resumed on %v (served %v): want both workers", resumedOn, seen)
			}
		})
	}
}

// workerStat reads a worker's descriptor and goroutine counts.
func (c *listenCluster) workerStat(w *runtime.Worker) (fds, gs int) {
	c.t.Helper()
	fmt.Sscanf(c.do(w, "stat"), "fds=%d goroutines=%d", &fds, &gs)
	return fds, gs
}

func TestRoundRobinDistributionAndNoLeaks(t *testing.T) {
	c := newListenCluster(t)
	ws := c.start(4)
	var addr string
	for _, w := range ws {
		addr, _ = c.listen(w, "listen tcp 127.0.0.1:0 policy=rr")
	}
	mustGet(t, "tcp", addr) // warm up: every worker's server goroutine runs
	for range 3 {
		mustGet(t, "tcp", addr)
	}
	type stat struct{ fds, gs int }
	before := map[uint64]stat{}
	for _, w := range ws {
		f, g := c.workerStat(w)
		before[w.ID()] = stat{f, g}
	}
	const n = 1000
	seen := collect(t, "tcp", addr, n)
	for _, w := range ws {
		got := seen[fmt.Sprintf("w%d", w.ID())]
		if got < n/4-1 || got > n/4+1 {
			t.Errorf("worker %d served %d of %d connections: %v", w.ID(), got, n, seen)
		}
	}
	// The workers give back every descriptor and goroutine (the
	// primary's are checked when the cluster is torn down).
	for _, w := range ws {
		deadline := time.Now().Add(waitLimit)
		for {
			f, g := c.workerStat(w)
			b := before[w.ID()]
			if f <= b.fds && g <= b.gs {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("worker %d: fds %d (was %d), goroutines %d (was %d)", w.ID(), f, b.fds, g, b.gs)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestRoundRobinDisconnectLosesNothing(t *testing.T) {
	for _, pol := range []string{"rr", "shared"} {
		t.Run(pol, func(t *testing.T) {
			c := newListenCluster(t)
			ws := c.start(3)
			var addr string
			for _, w := range ws {
				addr, _ = c.listen(w, "listen tcp 127.0.0.1:0 policy="+pol)
			}
			stop := make(chan struct{})
			t0 := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			var errs []error
			count := 0
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						_, err := rawGet("tcp", addr, "/?sleep=1ms")
						mu.Lock()
						count++
						if err != nil {
							errs = append(errs, fmt.Errorf("after %v: %w", time.Since(t0), err))
						}
						mu.Unlock()
					}
				}()
			}
			// Disconnect two workers while requests flow.
			for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
				mu.Lock()
				n := count
				mu.Unlock()
				if n >= 40 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no traffic")
				}
			}
			for _, w := range ws[:2] {
				if err := w.Disconnect(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			close(stop)
			wg.Wait()
			if len(errs) > 0 {
				t.Fatalf("%d of %d requests failed during disconnects: %v", len(errs), count, errs[0])
			}
			if got := mustGet(t, "tcp", addr); got != "w3" {
				t.Errorf("after disconnects: %s", got)
			}
		})
	}
}

func TestListenPolicyFromEnvAndOption(t *testing.T) {
	t.Setenv(runtime.EnvSchedPolicy, "shared")
	c := newListenCluster(t)
	ws := c.start(1)
	if _, p := c.listen(ws[0], "listen tcp 127.0.0.1:0"); p != "shared" {
		t.Errorf("%s=shared: policy %s", runtime.EnvSchedPolicy, p)
	}
	if _, p := c.listen(ws[0], "listen tcp 127.0.0.1:0 policy=rr"); p != "rr" {
		t.Errorf("per-listen rr: policy %s", p)
	}
	c.p.Setup(runtime.WithSchedulingPolicy(runtime.SchedRoundRobin))
	if _, p := c.listen(ws[0], "listen tcp 127.0.0.1:0"); p != "rr" {
		t.Errorf("cluster rr over env: policy %s", p)
	}
}

func TestListenOnPrimaryFD(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	for _, pol := range []string{"rr", "shared"} {
		t.Run(pol, func(t *testing.T) {
			c := newListenCluster(t, runtime.WithShareableFDs(fd))
			ws := c.start(2)
			for _, w := range ws {
				c.listen(w, fmt.Sprintf("listen tcp systemd fd=%d policy=%s", fd, pol))
			}
			if seen := collect(t, "tcp", ln.Addr().String(), 10); seen["w1"]+seen["w2"] != 10 {
				t.Errorf("answers %v", seen)
			}
			c.mu.Lock()
			ev := c.listening[ws[0].ID()]
			c.mu.Unlock()
			if len(ev) != 1 || ev[0].GetFd() != int32(fd) {
				t.Errorf("listening event %v, want fd %d", ev, fd)
			}
			for _, w := range ws {
				c.do(w, "close 0")
			}
		})
	}
	// By name, as systemd passes sockets: descriptors 3, 4, ... named in
	// LISTEN_FDNAMES; ours is the last. They are shareable without
	// WithShareableFDs.
	names := make([]string, fd-2)
	for i := range names {
		names[i] = "other"
	}
	names[len(names)-1] = "web"
	t.Setenv("LISTEN_PID", fmt.Sprint(os.Getpid()))
	t.Setenv("LISTEN_FDS", fmt.Sprint(len(names)))
	t.Setenv("LISTEN_FDNAMES", strings.Join(names, ":"))
	t.Cleanup(runtime.ForgetActivation) // NewPrimary takes them over for the process
	t.Run("name", func(t *testing.T) {
		c := newListenCluster(t)
		ws := c.start(2)
		for _, w := range ws {
			c.listen(w, "listen tcp web fdname=web")
		}
		if seen := collect(t, "tcp", ln.Addr().String(), 10); seen["w1"]+seen["w2"] != 10 || !rrBalanced(seen, 10, 2) {
			t.Errorf("answers %v", seen)
		}
		for _, w := range ws {
			c.do(w, "close 0")
		}
	})
	// The primary's descriptor is still open, and its socket listening.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		t.Errorf("the primary's descriptor %d was closed: %v", fd, err)
	}
	if conn, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err != nil {
		t.Errorf("the primary's socket no longer listens: %v", err)
	} else {
		conn.Close()
	}
}

func TestListenIPv6AndDualStack(t *testing.T) {
	probe, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	probe.Close()
	c := newListenCluster(t)
	ws := c.start(1)
	a6, _ := c.listen(ws[0], "listen tcp [::1]:0")
	if got := mustGet(t, "tcp", a6); got != "w1" {
		t.Errorf("IPv6: %s", got)
	}
	dual, _ := c.listen(ws[0], "listen tcp [::]:0")
	_, port, _ := net.SplitHostPort(dual)
	for _, host := range []string{"127.0.0.1", "::1"} {
		if got := mustGet(t, "tcp", net.JoinHostPort(host, port)); got != "w1" {
			t.Errorf("dual stack via %s: %s", host, got)
		}
	}
	only, _ := c.listen(ws[0], "listen tcp [::]:0 v6only backlog=16")
	_, port, _ = net.SplitHostPort(only)
	if got := mustGet(t, "tcp", net.JoinHostPort("::1", port)); got != "w1" {
		t.Errorf("v6only via ::1: %s", got)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), time.Second); err == nil {
		c.Close()
		t.Error("IPv6-only socket accepted an IPv4 connection")
	}
}

func TestListenExclusive(t *testing.T) {
	c := newListenCluster(t)
	ws := c.start(2)
	a1, p1 := c.listen(ws[0], "listen tcp 127.0.0.1:0 exclusive")
	a2, _ := c.listen(ws[1], "listen tcp 127.0.0.1:0 exclusive")
	if a1 == a2 {
		t.Errorf("exclusive listens share %s", a1)
	}
	if p1 != "local" {
		t.Errorf("exclusive listener reports policy %s, want none (ok false)", p1)
	}
	if mustGet(t, "tcp", a1) != "w1" || mustGet(t, "tcp", a2) != "w2" {
		t.Error("exclusive listeners answer for the wrong worker")
	}
	c.rec.waitFor(fmt.Sprintf("listening %d", ws[1].ID()))
}

func TestListenOutsideCluster(t *testing.T) {
	ctx := context.Background()
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0", runtime.WithBacklog(8), runtime.WithSchedulingPolicy(runtime.SchedReusePort))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, ok := runtime.ListenerPolicy(ln); ok {
		t.Error("a local listener reports a cluster policy")
	}
	if reusePortSupported {
		ln2, err := runtime.Listen(ctx, "tcp", ln.Addr().String(), runtime.WithSchedulingPolicy(runtime.SchedReusePort))
		if err != nil {
			t.Fatalf("second SO_REUSEPORT listener: %v", err)
		}
		ln2.Close()
	}
	if _, err := runtime.Listen(ctx, "tcp", ln.Addr().String()); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("plain listen on a used port: %v", err)
	}
	if _, err := runtime.Listen(ctx, "ip", "127.0.0.1"); err == nil {
		t.Error("Listen accepted network ip")
	}
	pc, err := runtime.ListenPacket(ctx, "udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc.Close()
	cfg := &tls.Config{}
	if err := runtime.ShareTLSSessionTickets(ln, cfg); err != nil {
		t.Error(err)
	}
}

// stopWorker stops a worker with SIGSTOP and waits until it is stopped: a
// hung worker, which acknowledges nothing.
func stopWorker(t *testing.T, w *runtime.Worker) {
	t.Helper()
	if err := syscall.Kill(w.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.PID()))
		if err != nil {
			return // no /proc to look at
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %d did not stop", w.ID())
		}
	}
}

// TestRoundRobinLastWorkerClosesQueue: when the last worker of a handle
// goes, the connections the primary still holds are closed (not left
// hanging) and the socket is closed.
func TestRoundRobinLastWorkerClosesQueue(t *testing.T) {
	c := newListenCluster(t)
	ws := c.start(1)
	addr, _ := c.listen(ws[0], "listen tcp 127.0.0.1:0 policy=rr")
	// One connection waits at the hung worker (its Accept asked for it),
	// the rest in the primary.
	waitRR(t, ws[0], "an idle server asks for one connection", func(held, credit, accepted int) bool { return credit == 1 })
	stopWorker(t, ws[0])
	const n = 6
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := rawGet("tcp", addr, "/")
			errs <- err
		}()
	}
	ws[0].Kill(syscall.SIGKILL)
	for range n {
		if err := <-errs; err == nil {
			t.Error("a request succeeded with no worker")
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("a client was left hanging: %v", err)
		}
	}
	refused(t, "tcp", addr)
	c.waitExit(ws[0])
}
