//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// The test binary is its own workers: each serves HTTP on a shared port.
// A worker started while the file named by $HERDCTL_TEST_BROKEN exists
// exits before it is ready (a broken release, for the reload that aborts).
func TestMain(m *testing.M) {
	if runtime.IsWorker() {
		os.Exit(workerMain())
	}
	os.Exit(m.Run())
}

func workerMain() int {
	ctx := context.Background()
	if f := os.Getenv("HERDCTL_TEST_BROKEN"); f != "" {
		if _, err := os.Stat(f); err == nil {
			fmt.Fprintln(os.Stderr, "broken release: config missing")
			return 3
		}
	}
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		return 10
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })}
	self.OnDisconnect(func(ctx context.Context) error { return srv.Shutdown(ctx) })
	if err := self.Start(ctx); err != nil {
		return 12
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 13
	}
	go srv.Serve(ln)
	<-self.Done()
	return 0
}

// testPool is a pool of n HTTP workers serving an admin socket, and the
// address they listen on.
type testPool struct {
	pool   *runtime.Pool
	socket string
	addr   string
	broken string
}

func startPool(tb testing.TB, n int) *testPool {
	tb.Helper()
	dir := tb.TempDir()
	tp := &testPool{socket: filepath.Join(dir, "admin.sock"), broken: filepath.Join(dir, "broken")}
	p := runtime.NewPrimary(runtime.WithEnv("HERDCTL_TEST_BROKEN=" + tp.broken))
	listening := make(chan string, 64)
	if err := p.Register(runtime.NewUnaryHandler("/herd.v1.EventService/Listening", func(ctx context.Context, ev *herdv1.ListeningEvent) (*emptypb.Empty, error) {
		listening <- net.JoinHostPort(ev.GetAddress().GetAddress(), fmt.Sprint(ev.GetAddress().GetPort()))
		return nil, nil
	})); err != nil {
		tb.Fatal(err)
	}
	tp.pool = runtime.NewPool(p, runtime.WithPoolSize(n), runtime.WithAdminSocket(tp.socket), runtime.WithStopTimeouts(10*time.Second, time.Second))
	if err := tp.pool.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		tp.pool.Stop(ctx)
	})
	for range n {
		select {
		case tp.addr = <-listening:
		case <-time.After(time.Minute):
			tb.Fatal("workers not listening")
		}
	}
	return tp
}

// herdctl runs herdctl with args and returns its exit status and output.
func (tp *testPool) herdctl(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"-socket", tp.socket}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCommands: every command against a live pool, as a user types them.
func TestCommands(t *testing.T) {
	herdtest.CheckLeaks(t)
	tp := startPool(t, 2)

	code, out, errOut := tp.herdctl("status")
	if code != 0 || !strings.HasPrefix(out, "SLOT  WORKER  PID") || strings.Count(out, "listening") != 2 {
		t.Fatalf("status: %d %q %q", code, out, errOut)
	}
	code, out, _ = tp.herdctl("status", "-json")
	var st jsonStatus
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status -json: %d %v %q", code, err, out)
	}
	if len(st.Workers) != 2 || st.Workers[0].ID != 1 || st.Workers[1].ID != 2 || !st.Workers[0].Ready || st.Workers[0].PID == 0 || st.Workers[0].State != "listening" {
		t.Fatalf("status -json workers: %+v", st.Workers)
	}

	// Connections: what the workers' servers accepted of the primary's
	// round-robin hand-offs, one per request without keep-alive. The
	// workers report them as their servers accept, so the count gets
	// there shortly after the responses.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for range 6 {
		res, err := client.Get("http://" + tp.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	for deadline := time.Now().Add(time.Minute); ; {
		_, out, _ = tp.herdctl("status", "-json")
		st = jsonStatus{}
		json.Unmarshal([]byte(out), &st)
		var n uint64
		for _, w := range st.Workers {
			n += w.Connections
		}
		if n == 6 {
			break
		}
		if n > 6 || time.Now().After(deadline) {
			t.Fatalf("connections %d after 6 requests: %s", n, out)
		}
		time.Sleep(10 * time.Millisecond)
	}

	code, out, errOut = tp.herdctl("reload")
	for _, want := range []string{"reload started: replacing workers 1,2, one slot at a time", "slot 0: worker 3 ready; disconnecting worker 1", "slot 0: worker 1 exited (reloaded)",
		"slot 1: worker 4 ready; disconnecting worker 2", "slot 1: worker 2 exited (reloaded)", "reloaded workers=3,4"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("reload output lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("reload: %d %q", code, errOut)
	}

	if code, out, errOut = tp.herdctl("scale", "3"); code != 0 || out != "scaled from 2 to 3 workers\n" {
		t.Fatalf("scale: %d %q %q", code, out, errOut)
	}
	if code, out, errOut = tp.herdctl("kill", "-signal", "KILL", "3"); code != 0 || !strings.HasPrefix(out, "sent SIGKILL to worker 3") {
		t.Fatalf("kill: %d %q %q", code, out, errOut)
	}
	if code, out, errOut = tp.herdctl("recycle", "4"); code != 0 || !strings.HasPrefix(out, "slot 1: worker 4 replaced by worker ") {
		t.Fatalf("recycle: %d %q %q", code, out, errOut)
	}
	if code, out, errOut = tp.herdctl("disconnect", "5"); code != 0 || out != "worker 5 exited (clean)\n" {
		t.Fatalf("disconnect: %d %q %q", code, out, errOut)
	}

	// Errors a person can act on, and usage errors.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"kill", "99"}, 1, "herdctl: kill: no live worker 99"},
		{[]string{"kill", "x"}, 2, `"x" is not a worker ID`},
		{[]string{"scale"}, 2, "usage: herdctl scale N"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"-socket", filepath.Join(t.TempDir(), "none"), "status"}, 1, "no admin socket at"},
	} {
		code, _, errOut := tp.herdctl(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("herdctl %v: %d %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}

	// A broken release: the reload aborts at its first slot, herdctl says
	// where and why and exits 1, and the workers keep serving.
	if err := os.WriteFile(tp.broken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = tp.herdctl("reload")
	if code != 1 || !strings.Contains(errOut, "reload aborted at slot 0") || !strings.Contains(errOut, "broken release: config missing") {
		t.Errorf("reload of a broken release: %d %q %q", code, out, errOut)
	}
	os.Remove(tp.broken)
	res, err := http.Get("http://" + tp.addr + "/")
	if err != nil {
		t.Fatalf("serving after the aborted reload: %v", err)
	}
	res.Body.Close()
}

// TestWatch: herdctl watch prints one logfmt line per event until its
// context ends (Ctrl-C), then exits 0.
func TestWatch(t *testing.T) {
	herdtest.CheckLeaks(t)
	tp := startPool(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-socket", tp.socket, "watch", "-all"}, pw, io.Discard)
		pw.Close()
	}()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := pr.Read(tmp)
			buf = append(buf, tmp[:n]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				lines <- string(buf[:i])
				buf = buf[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	// -all: the kept history first (the pool's start), then what follows.
	if code, _, errOut := tp.herdctl("kill", "-signal", "KILL", "1"); code != 0 {
		t.Fatal(errOut)
	}
	deadline := time.After(time.Minute)
	want := []string{"event=fork worker=1 ", "event=ready worker=1 ", "event=exit worker=1 ", "event=restart_scheduled slot=0 worker=1 ", "event=fork worker=2 ", "event=ready worker=2 "}
	for len(want) > 0 {
		select {
		case l := <-lines:
			if !strings.HasPrefix(l, "time=") || !strings.Contains(l, " seq=") {
				t.Errorf("not a logfmt event line: %q", l)
			}
			if strings.Contains(l, want[0]) {
				want = want[1:]
			}
		case <-deadline:
			t.Fatalf("watch did not print %q", want)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("watch exited %d after Ctrl-C", code)
	}
	for range lines {
	}
}

// BenchmarkStatus measures herdctl status, in process (connect, the Status
// call, the table, close: all but starting the herdctl process), and the
// Status call alone on a kept connection, against a pool of 4 HTTP
// workers, idle and while 50 keep-alive clients (wrk -c50's load) keep
// them busy over loopback.
func BenchmarkStatus(b *testing.B) {
	tp := startPool(b, 4)
	herdctl := func(b *testing.B) {
		for b.Loop() {
			if code, _, errOut := tp.herdctl("status"); code != 0 {
				b.Fatal(errOut)
			}
		}
	}
	call := func(b *testing.B) {
		c, err := runtime.DialAdmin(context.Background(), tp.socket)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		admin := herdv1herd.NewAdminServiceClient(c)
		for b.Loop() {
			if _, err := admin.Status(context.Background(), &herdv1.StatusRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("herdctl/idle", herdctl)
	b.Run("call/idle", call)
	for name, fn := range map[string]func(*testing.B){"herdctl/load": herdctl, "call/load": call} {
		b.Run(name, func(b *testing.B) { underLoad(b, tp.addr, fn) })
	}
}

// underLoad runs fn while 50 keep-alive clients send requests to addr.
func underLoad(b *testing.B, addr string, fn func(*testing.B)) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 50}}
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := client.Get("http://" + addr + "/")
				if err != nil {
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				served.Add(1)
			}
		}()
	}
	fn(b)
	b.StopTimer()
	close(stop)
	wg.Wait()
	client.CloseIdleConnections()
	b.ReportMetric(float64(served.Load())/b.Elapsed().Seconds(), "req/s")
}
