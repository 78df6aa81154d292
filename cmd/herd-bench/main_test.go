//go:build linux || darwin

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime/herdtest"
)

// The test binary is also every child the harness starts: herd primaries
// and workers, the raw socketpair ends and the single-process server.
func TestMain(m *testing.M) {
	if role, ok := childRole(); ok {
		os.Exit(runRole(role))
	}
	// Under -race every process sleeps a second as it exits (GORACE
	// atexit_sleep_ms), and a run exits up to ten: not for the children.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// expectedKeys are the JSON keys a run of every scenario must write here:
// a node_* key only when node is on PATH, reuseport only on Linux.
func expectedKeys(t *testing.T) []string {
	keys := []string{
		"ipc_oneway_msgs_per_s", "raw_socketpair_msgs_per_s",
		"ipc_rtt_us", "raw_socketpair_rtt_us",
		"ipc_1mib_rtt_ms", "raw_socketpair_1mib_rtt_ms", "ipc_1mib_rtt_default_ms",
		"fork8_listening_ms",
		"http_keepalive_rps_single", "http_keepalive_rps_rr", "http_keepalive_rps_shared",
		"http_close_rps_single", "http_close_rps_rr", "http_close_rps_shared",
		"http_close_rps_rr_per_single", "http_close_rps_shared_per_single",
		"rr_balance_max_over_min",
		"kill_failed_requests_rr", "kill_failed_requests_shared",
		"reload_failed_requests_keepalive_rr", "reload_failed_requests_keepalive_shared",
		"reload_failed_requests_close_rr", "reload_failed_requests_close_shared",
		"restart_ms",
	}
	if goruntime.GOOS != "windows" && goruntime.GOOS != "plan9" {
		keys = append(keys, "http_close_primary_cpu_ms_per_1k_conns", "ipc_oneway_ns_per_msg_primary", // getrusage
			"ipc_1mib_rtt_primary_cpu_us", "ipc_1mib_rtt_default_primary_cpu_us",
			"ipc_rtt_primary_cpu_us", "raw_socketpair_rtt_caller_cpu_us")
	}
	if goruntime.GOOS == "linux" {
		keys = append(keys, "ipc_rtt_ctx_switches", "raw_socketpair_rtt_ctx_switches", "ipc_oneway_ns_per_msg_worker",
			"ipc_1mib_rtt_worker_cpu_us", "ipc_1mib_rtt_default_worker_cpu_us",
			"ipc_rtt_worker_cpu_us", "raw_socketpair_rtt_callee_cpu_us",
			"primary_rss_mib_8_workers", "http_keepalive_rps_reuseport", "http_close_rps_reuseport",
			"http_close_rps_reuseport_per_single",
			"http_close_rps_raw_rr", "http_close_rps_raw_rr_per_single", // accept4
			"http_close_server_cpu_ms_per_1k_conns_raw_rr", "http_close_raw_rr_primary_cpu_ms_per_1k_conns",
			"http_close_server_cpu_ms_per_1k_conns_single", "http_close_server_cpu_ms_per_1k_conns_rr", // processCPU
			"http_close_server_cpu_ms_per_1k_conns_shared", "http_close_server_cpu_ms_per_1k_conns_reuseport",
			"kill_failed_requests_reuseport",
			"reload_failed_requests_keepalive_reuseport", "reload_failed_requests_close_reuseport")
	}
	if _, err := exec.LookPath("node"); err == nil {
		keys = append(keys,
			"node_ipc_oneway_msgs_per_s", "node_ipc_rtt_us", "node_ipc_1mib_rtt_ms",
			"node_fork8_listening_ms",
			"http_keepalive_rps_node_rr", "http_keepalive_rps_node_none",
			"http_close_rps_node_rr", "http_close_rps_node_none",
			"http_close_rps_node_rr_per_single", "http_close_rps_node_none_per_single",
			"kill_failed_requests_node_rr", "kill_failed_requests_node_none",
		)
	} else {
		t.Log("node is not on PATH: node_* keys are not expected")
	}
	slices.Sort(keys)
	return keys
}

// TestSmoke runs every scenario once, briefly, and checks that the harness
// completes, prints its table and writes every key its systems support.
// It checks no figure against a target: a smoke run measures nothing.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a few dozen processes")
	}
	base := herdtest.Take()
	out := filepath.Join(t.TempDir(), "bench.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	// PM2 is never installed nor run here (-pm2 ''): pm2_* keys are not
	// expected.
	code := run(ctx, []string{"-duration", "200ms", "-rounds", "1", "-connections", "8", "-workers", "2", "-quiet-wait", "0", "-pm2", "", "-json", out}, &stdout, &stderr)
	t.Logf("harness took %v; output:\n%s", time.Since(start).Round(time.Millisecond), stdout.String())
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"load: built-in Go client", "scenario", "ipc_oneway", "http_close", "kill_failed_requests", "reload_failed_requests_close", "restart_ms", "pm2: not available (-pm2 empty)", "target"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]float64
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("bad JSON %s: %v", b, err)
	}
	want := expectedKeys(t)
	for _, k := range want {
		v, ok := got[k]
		switch {
		case !ok:
			t.Errorf("JSON lacks %s", k)
		case strings.HasPrefix(k, "kill_failed_requests_"), strings.HasPrefix(k, "reload_failed_requests_"):
			// A count of failed requests: zero is the aim.
			if !(v >= 0) || v != math.Trunc(v) {
				t.Errorf("%s = %v, want a count", k, v)
			}
		case !(v > 0):
			t.Errorf("%s = %v, want a positive figure", k, v)
		}
	}
	for k := range got {
		if !slices.Contains(want, k) {
			t.Errorf("JSON has unexpected key %s", k)
		}
	}
	herdtest.Check(t, base, 20*time.Second)
}

// TestOnly checks -only and that a bad flag is refused.
func TestOnly(t *testing.T) {
	base := herdtest.Take()
	out := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-only", "ipc_rtt", "-duration", "100ms", "-rounds", "1", "-node", "", "-quiet-wait", "0", "-json", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]float64
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"ipc_rtt_primary_cpu_us", "ipc_rtt_us", "raw_socketpair_rtt_caller_cpu_us", "raw_socketpair_rtt_us"}
	if goruntime.GOOS == "linux" {
		want = []string{"ipc_rtt_ctx_switches", "ipc_rtt_primary_cpu_us", "ipc_rtt_us", "ipc_rtt_worker_cpu_us",
			"raw_socketpair_rtt_callee_cpu_us", "raw_socketpair_rtt_caller_cpu_us", "raw_socketpair_rtt_ctx_switches", "raw_socketpair_rtt_us"}
	}
	if !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	if !strings.Contains(stdout.String(), "node: not used") {
		t.Errorf("output does not say node is not used:\n%s", stdout.String())
	}
	if code := run(context.Background(), []string{"-only", "nope"}, &stdout, &stderr); code != 2 {
		t.Errorf("-only nope: exit status %d, want 2", code)
	}
	herdtest.Check(t, base, 20*time.Second)
}

// TestParseWrk checks the reading of wrk's summary.
func TestParseWrk(t *testing.T) {
	out := `Running 3s test @ http://127.0.0.1:40000/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms    1.20ms  30.00ms   90.00%
    Req/Sec    30.00k     2.00k   35.00k    70.00%
  180000 requests in 3.00s, 21.00MB read
  Socket errors: connect 0, read 12, write 0, timeout 0
Requests/sec:  59990.00
Transfer/sec:      7.00MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 180000 || r.errors != 12 || r.elapsed != 3*time.Second || r.rps() != 60000 {
		t.Errorf("got %+v", r)
	}
	if _, err := parseWrk("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

// TestMedian checks the statistics.
func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if m := durationMedianUS([]int64{3000, 1000, 2000}); m != 2 {
		t.Errorf("durationMedianUS = %v", m)
	}
	for v, want := range map[float64]string{2.0876e6: "2.09M msgs/s", 141000: "141k msgs/s", 999: "999 msgs/s"} {
		if got := formatFigure(v, "msgs/s"); got != want {
			t.Errorf("formatFigure(%v) = %q, want %q", v, got, want)
		}
	}
}
