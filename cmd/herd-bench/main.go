// Command herd-bench measures herd against Node's cluster module, a raw
// socketpair, a raw connection hand-off (the floor of rr) and a
// single-process Go server, and checks the figures
// against the targets of the project.
//
//	go run ./cmd/herd-bench [-only NAME,...] [-duration D] [-rounds N] [-json FILE]
//
// Each scenario runs against each of its systems in turn, round after round
// (the order rotates every round), and the table reports the median of the
// rounds with its ratio to the scenario's reference system. Every system
// runs in processes of its own, started by the harness and reaped before
// the next run: a herd primary (this binary, re-executed) with its workers
// (re-executed again), a Node primary (`node` with the scripts embedded in
// this binary) with its workers, the raw socketpair pair, the raw hand-off
// (an accepting process and its children), or the single-process Go server. The harness process itself only orchestrates
// and, for HTTP, generates the load (wrk when installed, else a built-in Go
// client), always on loopback and bounded in connections and time.
//
// With -json FILE the medians are also written as one flat JSON object;
// a key is left out when its system is not available (no node on PATH, no
// SO_REUSEPORT outside Linux).
//
// Scenarios (for -only): ipc_oneway, ipc_rtt, ipc_1mib_rtt,
// fork8_listening, http_keepalive, http_close, kill_failed_requests,
// reload_failed_requests_keepalive, reload_failed_requests_close,
// restart_ms.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	if role, ok := childRole(); ok {
		os.Exit(runRole(role))
	}
	// On any of these the harness stops and kills its children first: a
	// closed stdout (SIGPIPE, e.g. piped to head) included.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags set, shared by every scenario.
type config struct {
	only        []string
	duration    time.Duration
	rounds      int
	jsonPath    string
	connections int
	workers     int
	load        string // "auto", "wrk" or "go"
	nodePath    string // empty: Node is not available
	wrkPath     string // empty: wrk is not used
	log         *slog.Logger
	stderr      io.Writer
	tmp         string // scratch directory (Node scripts)
	quietWait   time.Duration
	loads       loadLog
	childEnv    []string // added to every child's environment
	pm2         string   // -pm2: auto, cached, a directory, or empty
	pm2Dir      string   // the pm2 package; empty: the pm2 systems are skipped (pm2Why)
	pm2Why      string
}

// run is the harness: it parses args, runs the scenarios, prints the table
// to stdout and writes the JSON file. It returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("herd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		only     = fs.String("only", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames(), ","))
		dur      = fs.Duration("duration", 3*time.Second, "measuring time of one run of one system")
		rounds   = fs.Int("rounds", 3, "rounds per scenario; the table shows the median")
		jsonOut  = fs.String("json", "", "also write the medians as one JSON object to `FILE`")
		conns    = fs.Int("connections", 64, "HTTP client connections, the same for every system")
		workers  = fs.Int("workers", goruntime.NumCPU(), "worker processes of the HTTP clusters")
		load     = fs.String("load", "auto", "HTTP load generator: auto (wrk when installed and -duration >= 1s, else go), wrk or go")
		node     = fs.String("node", "node", "Node.js executable for the node_* systems; empty to skip them")
		pm2      = fs.String("pm2", "auto", "PM2 for the pm2 systems: auto (the copy in the user cache dir, installed there with npm if missing), cached (that copy only), a `DIR` with the pm2 package, or empty to skip them")
		quiet    = fs.Duration("quiet-wait", 30*time.Second, "before each run, wait up to this long for other processes to leave the CPUs idle (Linux; 0: do not check)")
		procs    = fs.Int("gomaxprocs", 0, "GOMAXPROCS of the Go children (herd, raw, single); 0 leaves Go's default, as users run it")
		wprocs   = fs.Int("worker-gomaxprocs", -1, "GOMAXPROCS of the herd HTTP clusters' workers only (to study N workers sharing C CPUs); -1 is herd's default for a Pool's workers (runtime.WorkerGOMAXPROCS: max(1, CPUs/workers)), 0 leaves Go's default (or -gomaxprocs)")
		noRescue = fs.Bool("handoff-no-rescue", false, "herd's rr HTTP clusters use runtime.WithHandoffWithoutRescue (the primary closes each connection's descriptor once sent; a dead worker's unaccepted connections are lost)")
		profile  = fs.String("profile", "", "Go children write CPU profiles to `DIR` (cpu-<role>-<pid>.pprof)")
		tracing  = fs.String("trace", "", "Go children write execution traces to `DIR` (trace-<role>-<pid>.out)")
		verbose  = fs.Bool("v", false, "log every run")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herd-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg := &config{
		duration:    *dur,
		rounds:      *rounds,
		jsonPath:    *jsonOut,
		connections: *conns,
		workers:     *workers,
		load:        *load,
		log:         slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		stderr:      stderr,
		quietWait:   *quiet,
		pm2:         *pm2,
	}
	if !platformSupported {
		fmt.Fprintf(stderr, "herd-bench: herd links need Linux or macOS; %s is not supported\n", goruntime.GOOS)
		return 2
	}
	switch {
	case cfg.duration <= 0 || cfg.duration > 10*time.Minute:
		fmt.Fprintf(stderr, "herd-bench: -duration %v out of range (0, 10m]\n", cfg.duration)
		return 2
	case cfg.rounds < 1 || cfg.rounds > 100:
		fmt.Fprintf(stderr, "herd-bench: -rounds %d out of range [1, 100]\n", cfg.rounds)
		return 2
	case cfg.connections < 1 || cfg.connections > 1000:
		fmt.Fprintf(stderr, "herd-bench: -connections %d out of range [1, 1000]\n", cfg.connections)
		return 2
	case cfg.workers < 1 || cfg.workers > 64:
		fmt.Fprintf(stderr, "herd-bench: -workers %d out of range [1, 64]\n", cfg.workers)
		return 2
	}
	if *only != "" {
		for _, name := range strings.Split(*only, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains(scenarioNames(), name) {
				fmt.Fprintf(stderr, "herd-bench: unknown scenario %q (have %s)\n", name, strings.Join(scenarioNames(), ", "))
				return 2
			}
			cfg.only = append(cfg.only, name)
		}
	}
	if err := cfg.findTools(stdout); err != nil {
		fmt.Fprintf(stderr, "herd-bench: %v\n", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "herd-bench-")
	if err != nil {
		fmt.Fprintf(stderr, "herd-bench: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	cfg.tmp = tmp
	if *node != "" {
		cfg.nodePath = *node
	}
	if *procs < 0 || *procs > 1024 {
		fmt.Fprintf(stderr, "herd-bench: -gomaxprocs %d out of range [0, 1024]\n", *procs)
		return 2
	}
	if *procs > 0 {
		cfg.childEnv = append(cfg.childEnv, fmt.Sprintf("GOMAXPROCS=%d", *procs))
		fmt.Fprintf(stdout, "go children: GOMAXPROCS=%d (-gomaxprocs)\n", *procs)
	}
	if *wprocs < -1 || *wprocs > 1024 {
		fmt.Fprintf(stderr, "herd-bench: -worker-gomaxprocs %d out of range [-1, 1024]\n", *wprocs)
		return 2
	}
	cfg.childEnv = append(cfg.childEnv, fmt.Sprintf("%s=%d", envWorkerProcs, *wprocs))
	switch {
	case *wprocs > 0:
		fmt.Fprintf(stdout, "herd HTTP workers: GOMAXPROCS=%d (-worker-gomaxprocs)\n", *wprocs)
	case *wprocs == 0:
		fmt.Fprintf(stdout, "herd HTTP workers: Go's default GOMAXPROCS (-worker-gomaxprocs 0)\n")
	}
	if *noRescue {
		cfg.childEnv = append(cfg.childEnv, envNoRescue+"=1")
		fmt.Fprintf(stdout, "herd rr hand-off: without rescue (-handoff-no-rescue)\n")
	}
	for env, dir := range map[string]string{envProfile: *profile, envTrace: *tracing} {
		if dir == "" {
			continue
		}
		abs, err := filepath.Abs(dir)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			fmt.Fprintf(stderr, "herd-bench: %v\n", err)
			return 2
		}
		cfg.childEnv = append(cfg.childEnv, env+"="+abs)
	}
	cfg.describeNode(ctx, stdout)
	cfg.describePM2(ctx, stdout)

	res := newResults()
	failed := false
	for _, sc := range scenarios() {
		if len(cfg.only) > 0 && !slices.Contains(cfg.only, sc.name) {
			continue
		}
		if err := runScenario(ctx, cfg, sc, res); err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(stderr, "herd-bench: interrupted: %v\n", err)
				return 1
			}
			fmt.Fprintf(stderr, "herd-bench: %s: %v\n", sc.name, err)
			failed = true
		}
	}
	printTable(stdout, cfg, res)
	printTargets(stdout, res)
	if cfg.jsonPath != "" {
		if err := writeJSON(cfg.jsonPath, res); err != nil {
			fmt.Fprintf(stderr, "herd-bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", cfg.jsonPath)
	}
	if failed {
		return 1
	}
	return 0
}

// runScenario runs every available system of sc, cfg.rounds times, rotating
// which system goes first, and records each figure. A paired scenario
// (scenario.paired) runs its reference system next to every other system
// instead: see runPaired.
func runScenario(ctx context.Context, cfg *config, sc *scenario, res *results) error {
	var avail []*system
	for _, sys := range sc.systems {
		if why := sys.unavailable(cfg); why != "" {
			res.skip(sc, sys, why)
			continue
		}
		avail = append(avail, sys)
	}
	r := &runner{cfg: cfg, sc: sc, res: res, bad: make(map[*system]bool)}
	if sc.paired {
		if ref := sc.refSystem(avail); ref != nil {
			return r.runPaired(ctx, ref, avail)
		}
	}
	for round := range cfg.rounds {
		for i := range avail {
			if _, err := r.run(ctx, avail[(i+round)%len(avail)], round); err != nil {
				return err
			}
		}
	}
	return errors.Join(r.errs...)
}

// A runner makes one scenario's runs and records them.
type runner struct {
	cfg  *config
	sc   *scenario
	res  *results
	bad  map[*system]bool // systems that failed once: not run again
	errs []error
}

// run makes one run of sys (waiting for quiet CPUs first, repeating a
// disturbed run) and records its figures. It returns them, or nil when
// the system failed (now or before); the error is the context's only.
func (r *runner) run(ctx context.Context, sys *system, round int) (map[string]float64, error) {
	if r.bad[sys] {
		return nil, nil
	}
	var (
		figs  map[string]float64
		err   error
		start time.Time
	)
	for repeats := 0; ; repeats++ {
		if err := r.cfg.loads.awaitQuiet(ctx, r.cfg); err != nil {
			return nil, err
		}
		start = time.Now()
		before := takeCPU()
		figs, err = sys.run(ctx, r.cfg)
		if err != nil || !r.cfg.loads.disturbedRun(r.cfg, before, repeats) {
			break
		}
	}
	if err != nil {
		r.bad[sys] = true
		r.res.fail(r.sc, sys, err)
		r.errs = append(r.errs, fmt.Errorf("%s: %w", sys.name, err))
		return nil, nil
	}
	r.cfg.log.Info("run", "scenario", r.sc.name, "system", sys.name, "round", round+1, "figures", figs, "took", time.Since(start).Round(time.Millisecond))
	r.res.add(r.sc, sys, figs)
	return figs, nil
}

// runPaired runs a paired scenario: every round, every system other than
// the reference ref (in an order that rotates every round) runs right next
// to a run of ref of its own, ref first in one round and second in the
// next, so that both see the same minute of the machine; the ratio of the
// two runs' figures is recorded under the system's pairKey. The table and
// the targets use the median of these per-pair ratios, not the ratio of two
// medians taken minutes apart. Every run of ref counts toward ref's own
// median too.
func (r *runner) runPaired(ctx context.Context, ref *system, avail []*system) error {
	var others []*system
	for _, sys := range avail {
		if sys != ref {
			others = append(others, sys)
		}
	}
	for round := range r.cfg.rounds {
		for i := range others {
			k := (i + round) % len(others)
			sys := others[k]
			if r.bad[sys] || r.bad[ref] {
				continue
			}
			// Each system's pairs alternate which of the two runs first.
			order := []*system{ref, sys}
			if (k+round)%2 == 1 {
				order = []*system{sys, ref}
			}
			var figs [2]map[string]float64
			for j, s := range order {
				f, err := r.run(ctx, s, round)
				if err != nil {
					return err
				}
				figs[j] = f
			}
			if figs[0] == nil || figs[1] == nil {
				continue
			}
			refFigs, sysFigs := figs[0], figs[1]
			if order[0] != ref {
				refFigs, sysFigs = sysFigs, refFigs
			}
			if v, rv := sysFigs["value"], refFigs["value"]; rv > 0 && isFinite(v/rv) {
				r.res.vals[r.sc.pairKey(sys)] = append(r.res.vals[r.sc.pairKey(sys)], v/rv)
			}
		}
	}
	return errors.Join(r.errs...)
}

// printTable prints one row per system of every scenario that ran: the
// median figure and its ratio to the scenario's reference system.
func printTable(w io.Writer, cfg *config, res *results) {
	tw, flush := newTable(w)
	fmt.Fprintf(tw, "\nscenario\tsystem\tfigure\tratio\tnote\n")
	fmt.Fprintf(tw, "--------\t------\t------\t-----\t----\n")
	for _, sc := range res.ran {
		ref, refVal := "", 0.0
		for _, name := range sc.refs {
			for _, sys := range sc.systems {
				if sys.name == name {
					if v, ok := res.median(sys.key); ok && ref == "" {
						ref, refVal = name, v
					}
				}
			}
		}
		first := true
		label := func() string {
			if first {
				first = false
				return sc.name
			}
			return ""
		}
		for _, sys := range sc.systems {
			v, ok := res.median(sys.key)
			switch {
			case ok:
				ratio := "-"
				note := ""
				if ref == sys.name {
					ratio = "1 (reference)"
				} else if pr, ok := res.median(sc.pairKey(sys)); ok && sc.paired {
					ratio = formatRatio(pr, ref)
					note = fmt.Sprintf("ratio: median of %d paired runs", len(res.vals[sc.pairKey(sys)]))
				} else if ref != "" {
					ratio = formatRatio(v/refVal, ref)
				}
				if n := len(res.vals[sys.key]); n != cfg.rounds && !(sc.paired && ref == sys.name) {
					note = strings.TrimPrefix(note+fmt.Sprintf("; %d of %d rounds", n, cfg.rounds), "; ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", label(), sys.name, formatFigure(v, sc.unit), ratio, note)
			case res.failed[sys.key] != nil:
				msg, _, _ := strings.Cut(res.failed[sys.key].Error(), "\n")
				fmt.Fprintf(tw, "%s\t%s\t-\t-\tfailed: %s\n", label(), sys.name, truncate(msg, 120))
			case res.skipped[sys.key] != "":
				fmt.Fprintf(tw, "%s\t%s\t-\t-\tnot available: %s\n", label(), sys.name, res.skipped[sys.key])
			default:
				continue
			}
			for _, e := range sys.extras {
				if v, ok := res.median(e.key); ok {
					fmt.Fprintf(tw, "%s\t%s %s\t%s\t\t\n", label(), sys.name, e.label, formatFigure(v, e.unit))
				}
			}
		}
	}
	flush()
	fmt.Fprintf(w, "\nmedians of %d round(s) of %v per system; ratio = figure / reference figure,\n", cfg.rounds, cfg.duration)
	fmt.Fprintf(w, "or, where noted, the median of the ratios of each run to a reference run made right next to it\n")
	for _, sc := range res.ran {
		better := "higher is better"
		if sc.lower {
			better = "lower is better"
		}
		fmt.Fprintf(w, "  %-16s %s (%s)\n", sc.name, sc.title, better)
	}
	cfg.loads.report(w)
}

// A target is one of the project's performance targets: the figure under
// key divided by the one under ref (or the figure itself when ref is
// empty) must be at most (max) or at least bound. A target with a unit and
// a ref compares the two figures themselves (bound is then ignored): for
// counts, where a ratio to zero means nothing.
type target struct {
	desc  string
	key   string
	ref   string
	max   bool
	bound float64
	unit  string // of an absolute figure
}

var targets = []target{
	{"one-way messages >= 10x Node", "ipc_oneway_msgs_per_s", "node_ipc_oneway_msgs_per_s", false, 10, ""},
	{"one-way messages >= 2M/s (aim)", "ipc_oneway_msgs_per_s", "", false, 2e6, "msgs/s"},
	{"round trip <= 0.75x Node", "ipc_rtt_us", "node_ipc_rtt_us", true, 0.75, ""},
	{"round trip <= 1.2x raw socketpair", "ipc_rtt_us", "raw_socketpair_rtt_us", true, 1.2, ""},
	{"1 MiB round trip <= 1.3x raw socketpair", "ipc_1mib_rtt_ms", "raw_socketpair_1mib_rtt_ms", true, 1.3, ""},
	{"8 workers listening <= 0.15x Node", "fork8_listening_ms", "node_fork8_listening_ms", true, 0.15, ""},
	{"keep-alive rr >= 0.95x single", "http_keepalive_rps_rr", "http_keepalive_rps_single", false, 0.95, ""},
	{"keep-alive shared >= 0.95x single", "http_keepalive_rps_shared", "http_keepalive_rps_single", false, 0.95, ""},
	{"keep-alive reuseport >= 0.95x single", "http_keepalive_rps_reuseport", "http_keepalive_rps_single", false, 0.95, ""},
	{"new conn/request rr >= 2x Node rr", "http_close_rps_rr", "http_close_rps_node_rr", false, 2, ""},
	{"new conn/request rr >= 0.95x single", "http_close_rps_rr_per_single", "", false, 0.95, "x"},
	{"new conn/request shared >= 0.95x single", "http_close_rps_shared_per_single", "", false, 0.95, "x"},
	{"new conn/request reuseport >= 1.0x single", "http_close_rps_reuseport_per_single", "", false, 1.0, "x"},
	{"rr balance max/min <= 1.05", "rr_balance_max_over_min", "", true, 1.05, "x"},
	{"primary RSS with 8 workers <= 20 MiB", "primary_rss_mib_8_workers", "", true, 20, "MiB"},
	{"worker killed: rr <= 1 failed request", "kill_failed_requests_rr", "", true, 1, "failed"},
	{"worker killed: reuseport <= 1 failed request", "kill_failed_requests_reuseport", "", true, 1, "failed"},
	{"worker killed: shared <= Node SCHED_NONE", "kill_failed_requests_shared", "kill_failed_requests_node_none", true, 0, "failed"},
	{"reload, keep-alive: rr 0 failed requests", "reload_failed_requests_keepalive_rr", "", true, 0, "failed"},
	{"reload, keep-alive: shared 0 failed requests", "reload_failed_requests_keepalive_shared", "", true, 0, "failed"},
	{"reload, keep-alive: reuseport 0 failed requests", "reload_failed_requests_keepalive_reuseport", "", true, 0, "failed"},
	{"reload, close: rr 0 failed requests", "reload_failed_requests_close_rr", "", true, 0, "failed"},
	{"reload, close: shared 0 failed requests", "reload_failed_requests_close_shared", "", true, 0, "failed"},
	{"reload, close: reuseport 0 failed requests", "reload_failed_requests_close_reuseport", "", true, 0, "failed"},
	{"worker killed to replacement ready <= 50 ms", "restart_ms", "", true, 50, "ms"},
}

// printTargets checks every target whose figures were measured.
func printTargets(w io.Writer, res *results) {
	tw, flush := newTable(w)
	fmt.Fprintf(tw, "\ntarget\tmeasured\tverdict\n")
	fmt.Fprintf(tw, "------\t--------\t-------\n")
	skipped := 0
	for _, t := range targets {
		v, ok := res.median(t.key)
		if !ok {
			skipped++
			continue
		}
		measured := formatFigure(v, t.unit)
		bound := t.bound
		if t.ref != "" {
			r, ok := res.median(t.ref)
			if !ok {
				fmt.Fprintf(tw, "%s\t-\tnot measured (no %s)\n", t.desc, t.ref)
				continue
			}
			if t.unit != "" {
				bound = r
				measured += " vs " + formatFigure(r, t.unit)
			} else {
				v /= r
				measured = strconv.FormatFloat(v, 'f', 3, 64) + "x"
			}
		}
		holds := v >= bound
		if t.max {
			holds = v <= bound
		}
		verdict := "holds"
		if !holds {
			verdict = "MISSES"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.desc, strings.TrimSpace(measured), verdict)
	}
	flush()
	if skipped > 0 {
		fmt.Fprintf(w, "(%d more targets: figures not measured in this run)\n", skipped)
	}
}

// newTable returns a tabwriter whose output, on flush, goes to w without
// the padding a line's empty last cells leave.
func newTable(w io.Writer) (*tabwriter.Writer, func()) {
	var buf strings.Builder
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	return tw, func() {
		tw.Flush()
		for line := range strings.Lines(buf.String()) {
			fmt.Fprintln(w, strings.TrimRight(line, " \n"))
		}
	}
}
