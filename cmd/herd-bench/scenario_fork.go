package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
)

// The fork8_listening scenario, herd's side: a fresh primary forks 8
// workers (this binary), each of which starts, comes online, and listens
// on 127.0.0.1:0 with runtime.Listen (the cluster's default policy,
// round-robin, as Node's), serving HTTP as Node's workers do. The figure is
// the time from the first Fork call to the handling of the last listening
// event; then the primary reads its own resident set size (VmRSS), with
// its 8 workers online and listening.

// forkPrimary is the primary of fork8_listening.
func forkPrimary() error {
	n, err := roleInt(envWorkers)
	if err != nil {
		return err
	}
	ctx := context.Background()
	p := runtime.NewPrimary(runtime.WithEnv(envWorkerRole + "=" + workerListen))
	ev := newClusterEvents()
	if err := herdv1herd.RegisterEventServiceHandler(p, ev); err != nil {
		return err
	}
	defer stopCluster(p)
	t0 := time.Now()
	for range n {
		if _, err := p.Fork(ctx); err != nil {
			return err
		}
	}
	if _, err := ev.waitListening(n, 60*time.Second); err != nil {
		return err
	}
	elapsed := time.Since(t0)
	figs := map[string]float64{"value": float64(elapsed.Microseconds()) / 1e3}
	if rss, err := selfRSS(); err == nil {
		figs["primary_rss_mib_8_workers"] = rss
	}
	if err := stopCluster(p); err != nil {
		return err
	}
	emit(lineResult, figs)
	return nil
}

// waitListening waits for n listening events, all on one port, and
// returns that port; a worker exiting first is an error.
func (e *clusterEvents) waitListening(n int, timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	port := 0
	for got := 0; got < n; {
		select {
		case ev := <-e.listening:
			p := int(ev.GetAddress().GetPort())
			if port != 0 && p != port {
				return 0, fmt.Errorf("worker %d listens on port %d, the others on %d", ev.GetWorker().GetId(), p, port)
			}
			port = p
			got++
		case ev := <-e.exit:
			return 0, fmt.Errorf("worker %d exited before it listened: code %d signal %q", ev.GetWorker().GetId(), ev.GetCode(), ev.GetSignal())
		case <-t.C:
			return 0, fmt.Errorf("%d of %d workers listening after %v", got, n, timeout)
		}
	}
	return port, nil
}

// listenWorker is a worker of fork8_listening: online, listening, serving.
func listenWorker() error {
	ctx := context.Background()
	self, err := runtime.NewSelf()
	if err != nil {
		return err
	}
	if err := self.Start(ctx); err != nil {
		return err
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: helloHandler{}, ReadHeaderTimeout: 10 * time.Second}
	self.OnDisconnect(func(ctx context.Context) error {
		stopProfiles() // before the drain: the runtime exits the process after it
		return srv.Shutdown(ctx)
	})
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	<-self.Done()
	return nil
}

// selfRSS reads this process's resident set size, in MiB, from
// /proc/self/status (Linux).
func selfRSS() (float64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}
