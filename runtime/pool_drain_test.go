//go:build unix

package runtime_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
)

// serveReadiness serves pl's ReadinessHandler on a loopback port and
// returns a function that GETs it: the status code and body.
func serveReadiness(t *testing.T, pl *runtime.Pool) func() (int, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: pl.ReadinessHandler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitLimit}
	return func() (int, string) {
		t.Helper()
		res, err := client.Get("http://" + ln.Addr().String() + "/readyz")
		if err != nil {
			t.Fatalf("readiness: %v", err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
}

// slowGet sends GET /slow to addr on a connection of its own and returns
// the channel of its outcome: the body, or the error.
func slowGet(addr string) <-chan string {
	out := make(chan string, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitLimit}
		res, err := client.Get("http://" + addr + "/slow")
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		out <- string(b)
	}()
	return out
}

// TestPoolDrainDelay is what Kubernetes relies on: from the moment a
// graceful stop begins the readiness endpoint answers 503, while for the
// drain delay new connections are still accepted and served; then the
// workers are disconnected, and the requests in flight (accepted before the
// stop, and during the drain) finish. The drain delay runs on the pool's
// clock, which the test moves once it has checked the drain.
func TestPoolDrainDelay(t *testing.T) {
	// Not 15 s: the watchdog's ticks are every 15 s on this clock too.
	const drainDelay = 17 * time.Second
	clk := newFakeClock(0)
	c, pl := newPool(t, "inflight", runtime.WithPoolSize(2), runtime.WithClock(clk),
		runtime.WithStopTimeouts(time.Hour, time.Hour), runtime.WithDrainDelay(drainDelay))
	ready := serveReadiness(t, pl)
	if code, body := ready(); code != http.StatusServiceUnavailable {
		t.Errorf("readiness before Start: %d %q, want 503", code, body)
	}
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	c.rec.waitFor("ready 2 ")
	addr := strings.TrimPrefix(c.rec.waitFor("report 1 addr "), "report 1 addr ")
	if code, body := ready(); code != http.StatusOK || body != "2/2 workers ready, 0 restarting" {
		t.Errorf("readiness while serving: %d %q, want 200", code, body)
	}
	if !pl.Serving() {
		t.Error("not Serving with its workers ready")
	}

	before := slowGet(addr) // in flight when the stop begins
	waitInflight := func(n int) {
		t.Helper()
		deadline := time.NewTimer(waitLimit)
		defer deadline.Stop()
		for countSuffix(c.rec.all(), " inflight") < n {
			select {
			case <-c.rec.notify:
			case <-deadline.C:
				t.Fatalf("fewer than %d requests in flight: %q", n, c.rec.all())
			}
		}
	}
	waitInflight(1)

	stopped := make(chan error, 1)
	go func() { stopped <- pl.Stop(context.Background()) }()
	// The stop begins with the drain: not ready any more (the drain's timer
	// is set after the pool stops Serving, and Advance below must find it)...
	clk.waitPendingIn(t, drainDelay)
	if pl.Serving() {
		t.Fatal("still Serving after the drain began")
	}
	if code, body := ready(); code != http.StatusServiceUnavailable || body != "draining: 2/2 workers ready, 0 restarting" {
		t.Errorf("readiness during the drain: %d %q, want 503 draining", code, body)
	}
	// ...while new connections are still served, several times over.
	var during []<-chan string
	for i := range 4 {
		during = append(during, slowGet(addr))
		waitInflight(2 + i)
	}
	if n := countSuffix(c.rec.all(), " draining by-primary"); n != 0 {
		t.Errorf("%d workers disconnected during the drain delay", n)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned during the drain delay: %v", err)
	default:
	}

	// The drain delay ends: the workers are disconnected, and everything in
	// flight finishes.
	clk.Advance(drainDelay)
	if err := <-stopped; err != nil {
		t.Errorf("Stop: %v", err)
	}
	for i, ch := range append([]<-chan string{before}, during...) {
		if got := <-ch; got != "done" {
			t.Errorf("request %d: %q, want done", i, got)
		}
	}
	if code, _ := ready(); code != http.StatusServiceUnavailable {
		t.Errorf("readiness after the stop: %d, want 503", code)
	}
}

// countSuffix counts the lines ending with suffix.
func countSuffix(lines []string, suffix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasSuffix(l, suffix) {
			n++
		}
	}
	return n
}
