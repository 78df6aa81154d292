package runtime

import (
	"strconv"
	"strings"
)

// envGOMAXPROCS is the Go runtime's own variable: a worker started with it
// set runs that many Ps.
const envGOMAXPROCS = "GOMAXPROCS"

// WorkerGOMAXPROCS is the rule a Pool's workers follow by default: when
// workers processes share cpus CPUs, each runs GOMAXPROCS =
// max(1, cpus/workers). Go's own default (every worker sized for the whole
// machine) makes N schedulers wake, spin and steal on the same few CPUs; on
// a 2-vCPU machine with 2 workers sharing one port with SO_REUSEPORT,
// GOMAXPROCS=1 per worker served new-connection-per-request HTTP at about
// single-process Go's rate where Go's default served about 0.8x of it,
// and cost nothing on keep-alive connections (README, "Performance").
// Per connection (perf stat on the server processes under wrk, new
// connection per request, 2 workers on 2 vCPUs, medians of 3-8 runs),
// GOMAXPROCS=1 against 2 per worker: reuseport 51 against 68 ms of CPU per
// 1000 connections, shared 52 against 63 (single-process Go 52-54), with
// 0.5-0.6 against 1.4-1.5 context switches and 13.0-13.4 against
// 14.8-15.3 system calls per connection: a second P in each worker only
// adds scheduler wake-ups (futex, epoll_pwait) on CPUs that are busy
// anyway.
func WorkerGOMAXPROCS(workers, cpus int) int {
	if workers < 1 {
		workers = 1
	}
	return max(1, cpus/workers)
}

// WithWorkerGOMAXPROCS sets the GOMAXPROCS of every worker forked after it:
// n > 0 puts GOMAXPROCS=n in their environment; 0 leaves Go's default (each
// worker sized for every CPU); n < 0 restores herd's default, under which a
// Pool's workers follow WorkerGOMAXPROCS(pool size, DefaultPoolSize()) and a
// worker forked with Primary.Fork outside a Pool keeps Go's default (the
// primary cannot know how many workers will share the CPUs). A GOMAXPROCS
// the user put in the primary's environment, WithEnv or WithForkEnv always
// wins.
func WithWorkerGOMAXPROCS(n int) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.workerProcs = max(n, -1) })
}

// workerProcsEnv returns the GOMAXPROCS entry to add to a worker's
// environment, or "" to add none. env is the worker's environment before
// herd's own entries; poolSize is the forking Pool's size (0 outside a Pool);
// cpus is the CPUs the primary may use.
func workerProcsEnv(env []string, workerProcs, poolSize, cpus int) string {
	for _, kv := range env {
		// An empty value is one Go ignores: not the user's choice.
		if k, v, _ := strings.Cut(kv, "="); k == envGOMAXPROCS && v != "" {
			return ""
		}
	}
	n := workerProcs
	if n < 0 {
		if poolSize <= 0 {
			return ""
		}
		n = WorkerGOMAXPROCS(poolSize, cpus)
	}
	if n == 0 {
		return ""
	}
	return envGOMAXPROCS + "=" + strconv.Itoa(n)
}
