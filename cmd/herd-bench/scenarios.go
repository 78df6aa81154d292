package main

import (
	"context"
	"fmt"
	goruntime "runtime"
)

// A scenario is one measurement, made on several systems.
type scenario struct {
	name  string // for -only
	title string // one line: what is measured
	unit  string // of every system's main figure
	// lower says a lower figure is better (latencies); the ratio column is
	// always figure / reference.
	lower bool
	// refs are the reference systems for the ratio column, the first one
	// available wins.
	refs    []string
	systems []*system
	// paired scenarios run the reference system right next to every
	// other system, every round, and compare each run with its own
	// reference run (runner.runPaired): for figures that move with the
	// machine's load as much as the systems differ.
	paired bool
}

// refSystem returns the scenario's reference system among avail (the
// first of refs there), or nil.
func (sc *scenario) refSystem(avail []*system) *system {
	for _, name := range sc.refs {
		for _, sys := range avail {
			if sys.name == name {
				return sys
			}
		}
	}
	return nil
}

// pairKey is the JSON key of sys's per-pair ratios to the reference
// system in a paired scenario: its key, "_per_", the reference's name.
func (sc *scenario) pairKey(sys *system) string {
	ref := ""
	if len(sc.refs) > 0 {
		ref = sc.refs[0]
	}
	return sys.key + "_per_" + ref
}

// A system is one implementation measured in a scenario.
type system struct {
	name string // in the table: herd, raw, node, single, rr, ...
	key  string // JSON key of its main figure
	// extras are the other figures its run reports.
	extras []extra
	// needs says why the system cannot run here, or "" when it can.
	needs func(*config) string
	// tableOnly systems are printed but not written to the JSON file.
	tableOnly bool
	// run makes one measurement: the main figure under "value", extras
	// under their keys.
	run func(ctx context.Context, cfg *config) (map[string]float64, error)
}

// An extra is a figure a run reports besides its main one.
type extra struct {
	key   string
	label string // table row label
	unit  string
	// tableOnly figures are printed but not written to the JSON file.
	tableOnly bool
}

func (s *system) unavailable(cfg *config) string {
	if s.needs == nil {
		return ""
	}
	return s.needs(cfg)
}

func needsNode(cfg *config) string {
	if cfg.nodePath == "" {
		return "node not available (not on PATH or -node empty)"
	}
	return ""
}

func needsReuseport(cfg *config) string {
	if goruntime.GOOS != "linux" {
		return "SO_REUSEPORT load balancing needs Linux"
	}
	return ""
}

// The IPC modes shared by the herd, raw and Node runs.
const (
	modeOneway = "oneway"
	modeRTT    = "rtt"
	mode1MiB   = "1mib"
	// mode1MiBDefault is ipc_1mib_rtt's herd run without borrowed
	// buffers (herd only).
	mode1MiBDefault = "1mib-default"
)

// scenarios returns every scenario, in the order they run.
func scenarios() []*scenario {
	return []*scenario{
		{
			name:  "ipc_oneway",
			title: "small message worker→primary, fire-and-forget, received per second",
			unit:  "msgs/s",
			refs:  []string{"node", "raw"},
			systems: []*system{
				{name: "herd", key: "ipc_oneway_msgs_per_s", run: herdIPC(modeOneway), extras: []extra{
					{key: "ipc_oneway_ns_per_msg_primary", label: "primary CPU per message", unit: "ns"},
					{key: "ipc_oneway_ns_per_msg_worker", label: "worker CPU per message", unit: "ns"},
					{key: "ipc_oneway_primary_allocs", label: "primary allocations per message", unit: "/msg", tableOnly: true},
					{key: "ipc_oneway_primary_syscalls", label: "primary link system calls per message", unit: "/msg", tableOnly: true},
				}},
				{name: "raw", key: "raw_socketpair_msgs_per_s", run: rawIPC(modeOneway)},
				{name: "node", key: "node_ipc_oneway_msgs_per_s", needs: needsNode, run: nodeIPC(modeOneway)},
			},
		},
		{
			name:  "ipc_rtt",
			title: "small request/response round trip primary→worker→primary, median",
			unit:  "µs",
			lower: true,
			refs:  []string{"node", "raw"},
			systems: []*system{
				{name: "herd", key: "ipc_rtt_us", run: herdIPC(modeRTT), extras: []extra{
					{key: "ipc_rtt_ctx_switches", label: "context switches per round trip, both processes", unit: "/rtt"},
					{key: "ipc_rtt_primary_cpu_us", label: "primary (caller) CPU per round trip", unit: "µs"},
					{key: "ipc_rtt_worker_cpu_us", label: "worker (callee) CPU per round trip", unit: "µs"},
					{key: "ipc_rtt_primary_allocs", label: "primary allocations per round trip", unit: "/rtt", tableOnly: true},
					{key: "ipc_rtt_primary_syscalls", label: "primary link system calls per round trip", unit: "/rtt", tableOnly: true},
				}},
				{name: "raw", key: "raw_socketpair_rtt_us", run: rawIPC(modeRTT), extras: []extra{
					{key: "raw_socketpair_rtt_ctx_switches", label: "context switches per round trip, both processes", unit: "/rtt"},
					{key: "raw_socketpair_rtt_caller_cpu_us", label: "caller CPU per round trip", unit: "µs"},
					{key: "raw_socketpair_rtt_callee_cpu_us", label: "callee CPU per round trip", unit: "µs"},
				}},
				{name: "node", key: "node_ipc_rtt_us", needs: needsNode, run: nodeIPC(modeRTT)},
			},
		},
		{
			name:  "ipc_1mib_rtt",
			title: "1 MiB payload echoed primary→worker→primary, median",
			unit:  "ms",
			lower: true,
			refs:  []string{"node"},
			systems: []*system{
				// herd: the worker's handler WithBorrowedRequests, the
				// primary's call WithBorrowedResponse (runtime/borrow.go);
				// herd default: neither, messages own their bytes.
				{name: "herd", key: "ipc_1mib_rtt_ms", run: herdIPC(mode1MiB), extras: blobExtras("ipc_1mib_rtt")},
				{name: "herd default", key: "ipc_1mib_rtt_default_ms", run: herdIPC(mode1MiBDefault), extras: blobExtras("ipc_1mib_rtt_default")},
				{name: "raw", key: "raw_socketpair_1mib_rtt_ms", run: rawIPC(mode1MiB)},
				{name: "node", key: "node_ipc_1mib_rtt_ms", needs: needsNode, run: nodeIPC(mode1MiB)},
			},
		},
		{
			name:  "fork8_listening",
			title: "8 workers from the first fork to all listening; primary RSS then",
			unit:  "ms",
			lower: true,
			refs:  []string{"node"},
			systems: []*system{
				{name: "herd", key: "fork8_listening_ms", run: herdFork, extras: []extra{
					{key: "primary_rss_mib_8_workers", label: "primary RSS", unit: "MiB"},
				}},
				{name: "node", key: "node_fork8_listening_ms", needs: needsNode, run: nodeFork, extras: []extra{
					{key: "node_primary_rss_mib_8_workers", label: "primary RSS", unit: "MiB", tableOnly: true},
				}},
			},
		},
		httpScenario("http_keepalive", false),
		httpScenario("http_close", true),
		killScenario(),
		reloadScenario(false),
		reloadScenario(true),
		restartScenario(),
	}
}

// httpScenario is the HTTP hello-world scenario over keep-alive
// connections, or with a new connection per request (closeConns).
func httpScenario(name string, closeConns bool) *scenario {
	title := "HTTP hello world, keep-alive connections, requests per second"
	suffix := "keepalive"
	if closeConns {
		title = "HTTP hello world, a new connection per request, requests per second"
		suffix = "close"
	}
	key := func(sys string) string { return "http_" + suffix + "_rps_" + sys }
	sys := func(name string, srv server, needs func(*config) string, extras ...extra) *system {
		run := httpRun(srv, closeConns)
		if closeConns {
			// Every Go system reports its server processes' CPU per 1000
			// connections: under the system's own key.
			extras = append(extras, extra{key: "http_close_server_cpu_ms_per_1k_conns_" + name, label: "server processes' CPU per 1000 connections", unit: "ms"})
			run = renameFigure(run, figServerCPU, extras[len(extras)-1].key)
		}
		return &system{name: name, key: key(name), needs: needs, extras: extras, run: run}
	}
	// With keep-alive the spread is that of wrk's first burst of
	// connections, shared by credit (printed only: the target and the
	// JSON key are the close run's, shared over many connections).
	const burstKey = "http_keepalive_rr_balance_max_over_min"
	balance := []extra{{key: burstKey, label: "per-worker conns max/min (the first burst)", unit: "x", tableOnly: true}}
	if closeConns {
		balance = []extra{
			{key: "rr_balance_max_over_min", label: "per-worker conns max/min", unit: "x"},
			{key: "http_close_primary_cpu_ms_per_1k_conns", label: "primary CPU per 1000 connections", unit: "ms"},
		}
	}
	systems := []*system{
		sys("single", serverSingle, nil),
		sys("rr", serverHerd("rr"), nil, balance...),
	}
	if closeConns {
		// The floor of any hand-off from an accepting process, for rr.
		systems = append(systems, sys("raw_rr", serverRawRR, needsRawRR, extra{
			key: "http_close_raw_rr_primary_cpu_ms_per_1k_conns", label: "accepting process's CPU per 1000 connections", unit: "ms"}))
	} else {
		systems[1].run = renameFigure(systems[1].run, "rr_balance_max_over_min", burstKey)
	}
	systems = append(systems,
		sys("shared", serverHerd("shared"), nil),
		sys("reuseport", serverHerd("reuseport"), needsReuseport),
		sys("node_rr", serverNode("rr"), needsNode),
		sys("node_none", serverNode("none"), needsNode),
	)
	return &scenario{
		name:  name,
		title: title,
		unit:  "req/s",
		refs:  []string{"single"},
		// A new connection per request is CPU-bound on both sides (the
		// load generator shares the CPUs), and the single reference moved
		// as much from run to run as the systems differ: every system is
		// compared with a single run made right next to it.
		paired:  closeConns,
		systems: systems,
	}
}

func scenarioNames() []string {
	var names []string
	for _, sc := range scenarios() {
		names = append(names, sc.name)
	}
	return names
}

// herdIPC runs one herd IPC measurement: a primary (this binary) and one
// worker.
func herdIPC(mode string) func(context.Context, *config) (map[string]float64, error) {
	return func(ctx context.Context, cfg *config) (map[string]float64, error) {
		return runSelf(ctx, cfg, roleIPCPrimary, "HERD_BENCH_MODE="+mode)
	}
}

// rawIPC runs one raw socketpair measurement: this binary and a child of it
// over a bare socketpair.
func rawIPC(mode string) func(context.Context, *config) (map[string]float64, error) {
	return func(ctx context.Context, cfg *config) (map[string]float64, error) {
		return runSelf(ctx, cfg, roleRawPrimary, "HERD_BENCH_MODE="+mode)
	}
}

// blobExtras are the figures of a herd ipc_1mib_rtt run, under prefix.
func blobExtras(prefix string) []extra {
	return []extra{
		{key: prefix + "_primary_cpu_us", label: "primary CPU per round trip", unit: "µs"},
		{key: prefix + "_worker_cpu_us", label: "worker CPU per round trip", unit: "µs"},
		{key: prefix + "_primary_allocs", label: "primary allocations per round trip", unit: "/rtt", tableOnly: true},
		{key: prefix + "_primary_alloc_kib", label: "primary KiB allocated per round trip", unit: "KiB", tableOnly: true},
		{key: prefix + "_primary_gcs", label: "primary GC cycles per round trip", unit: "/rtt", tableOnly: true},
	}
}

// herdFork forks 8 workers that listen, in a fresh primary.
func herdFork(ctx context.Context, cfg *config) (map[string]float64, error) {
	return runSelf(ctx, cfg, roleForkPrimary, fmt.Sprintf("HERD_BENCH_WORKERS=%d", forkWorkers))
}

// forkWorkers is the size of the fork scenario's cluster.
const forkWorkers = 8

// renameFigure returns run with its figure from under key moved to under
// to.
func renameFigure(run func(context.Context, *config) (map[string]float64, error), from, to string) func(context.Context, *config) (map[string]float64, error) {
	return func(ctx context.Context, cfg *config) (map[string]float64, error) {
		figs, err := run(ctx, cfg)
		if v, ok := figs[from]; ok {
			delete(figs, from)
			figs[to] = v
		}
		return figs, err
	}
}
