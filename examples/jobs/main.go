// Command jobs farms typed jobs out to worker processes.
//
//	go run ./examples/jobs [-workers N] [-jobs M] [-rounds R]
//
// The primary keeps N workers (default 4) in a runtime.Pool and sends M jobs
// (default 100), spread round-robin over the workers' slots, as
// request/response calls of the generated JobService client, about two in
// flight per worker. A job is R rounds
// of SHA-256 (default 20000); while it runs, the worker reports its
// progress to the primary with fire-and-forget ProgressService messages.
// The primary computes every job itself and checks the worker's digest
// against its own; a job is ok when its digest matches and its final
// progress report arrived from the worker that ran it. Then it disconnects
// the workers, waits for their exits, and prints one line on stdout:
//
//	jobs=100 ok=100 failed=0 workers=4
//
// It exits with status 0 when every job is ok and 1 otherwise; the jobs
// that failed are listed on stderr.
//
// A worker that dies is replaced by the pool, and the jobs it was running
// fail with CodeUnavailable; the primary runs each of them again on
// another ready worker (up to 5 attempts). That is safe because a job is
// idempotent: a digest depends only on the job, and running it twice
// changes nothing but the time spent. A job that is not idempotent must not
// be retried blindly.
//
// Fault injection: -fault-worker ID makes the worker with that ID flip a
// bit of every digest it returns, so that the primary's checks can be seen
// to fail. -kill-worker ID makes the primary kill that worker (SIGKILL)
// halfway through its third job (the worker stops there and waits for it):
// the pool replaces it and the jobs it was running are retried, so every job
// is still ok. Workers receive the primary's
// arguments, so they see the flags.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	jobsv1 "github.com/herd-go/herd/examples/jobs/gen/jobs/v1"
	"github.com/herd-go/herd/examples/jobs/gen/jobs/v1/jobsv1herd"
	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
)

func main() {
	fs, cfg := flags(os.Stderr)
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if runtime.IsWorker() {
		os.Exit(worker(cfg))
	}
	os.Exit(primary(cfg, os.Stdout, os.Stderr))
}

type config struct {
	workers, jobs int
	rounds        uint
	faultWorker   uint64
	killWorker    uint64
}

func flags(stderr io.Writer) (*flag.FlagSet, *config) {
	cfg := &config{}
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.workers, "workers", 4, "worker processes to fork")
	fs.IntVar(&cfg.jobs, "jobs", 100, "jobs to run")
	fs.UintVar(&cfg.rounds, "rounds", 20000, "SHA-256 rounds per job")
	fs.Uint64Var(&cfg.faultWorker, "fault-worker", 0, "fault injection: the worker with this ID returns wrong digests")
	fs.Uint64Var(&cfg.killWorker, "kill-worker", 0, "fault injection: the primary kills the worker with this ID during its third job")
	return fs, cfg
}

// compute runs a job: rounds of SHA-256 starting from the seed. progress,
// when not nil, is called every quarter of the way and at the end.
func compute(job *jobsv1.Job, progress func(done uint32)) []byte {
	sum := sha256.Sum256(job.GetSeed())
	total := job.GetRounds()
	step := max(total/4, 1)
	for i := uint32(1); i < total; i++ {
		sum = sha256.Sum256(sum[:])
		if progress != nil && i%step == 0 {
			progress(i)
		}
	}
	if progress != nil {
		progress(total)
	}
	return sum[:]
}

// ---- worker ----

// runner serves JobService in a worker.
type runner struct {
	jobsv1herd.UnimplementedJobServiceHandler
	progress jobsv1herd.ProgressServiceClient
	corrupt  bool
	// hang makes the worker stop answering halfway through its third job
	// (-kill-worker: the primary kills it then, so that the job is surely
	// in flight when the worker dies). Jobs run one at a time.
	hang bool
	runs int
}

func (r *runner) Run(ctx context.Context, req *jobsv1.RunRequest) (*jobsv1.RunResponse, error) {
	job := req.GetJob()
	if job.GetRounds() == 0 {
		return nil, runtime.Errorf(runtime.CodeInvalidArgument, "job %d has no rounds", job.GetId())
	}
	r.runs++
	var sendErr error
	digest := compute(job, func(done uint32) {
		if sendErr == nil {
			sendErr = r.progress.SendProgress(ctx, &jobsv1.ProgressRequest{JobId: job.GetId(), Done: done, Total: job.GetRounds()})
		}
		if r.hang && r.runs == 3 && done >= job.GetRounds()/2 {
			select {} // until the primary kills this worker
		}
	})
	if sendErr != nil {
		return nil, sendErr
	}
	if r.corrupt {
		digest[0] ^= 1
	}
	return &jobsv1.RunResponse{JobId: job.GetId(), Digest: digest}, nil
}

func worker(cfg *config) int {
	self, err := runtime.NewSelf()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := &runner{
		progress: jobsv1herd.NewProgressServiceClient(self),
		corrupt:  cfg.faultWorker == self.ID(),
		hang:     cfg.killWorker == self.ID(),
	}
	if err := jobsv1herd.RegisterJobServiceHandler(self, r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := self.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-self.Done() // the runtime exits the process once disconnected
	return 0
}

// ---- primary ----

// tracker serves ProgressService on the primary and records, per job and
// worker (a job retried after its worker died ran on two), the last
// progress report.
type tracker struct {
	jobsv1herd.UnimplementedProgressServiceHandler
	mu   sync.Mutex
	jobs map[jobRun]*seen
	// kill, when set, is called with each progress report first.
	kill func(w *runtime.Worker, req *jobsv1.ProgressRequest)
}

// jobRun is one job on one worker.
type jobRun struct{ job, worker uint64 }

type seen struct {
	done     uint32
	total    uint32
	problems []string
}

func (t *tracker) Progress(ctx context.Context, req *jobsv1.ProgressRequest) (*jobsv1.ProgressResponse, error) {
	w, ok := runtime.WorkerFromContext(ctx)
	if !ok {
		return nil, runtime.Errorf(runtime.CodeInternal, "progress from nowhere")
	}
	if t.kill != nil {
		t.kill(w, req)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	key := jobRun{req.GetJobId(), w.ID()}
	s := t.jobs[key]
	if s == nil {
		s = &seen{}
		t.jobs[key] = s
	}
	if req.GetDone() < s.done {
		s.problems = append(s.problems, fmt.Sprintf("progress went back from %d to %d", s.done, req.GetDone()))
	}
	s.done, s.total = req.GetDone(), req.GetTotal()
	return &jobsv1.ProgressResponse{}, nil
}

// lifecycle follows the workers' events: ready, deaths and replacements.
type lifecycle struct {
	herdv1herd.UnimplementedEventServiceHandler
	ready  chan uint64
	first  int // workers of the first generation
	stderr io.Writer
	mu     sync.Mutex
}

func (l *lifecycle) Ready(ctx context.Context, ev *herdv1.ReadyEvent) error {
	id := ev.GetWorker().GetId()
	if id > uint64(l.first) {
		l.mu.Lock()
		fmt.Fprintf(l.stderr, "jobs: worker %d ready in slot %d\n", id, ev.GetSlot())
		l.mu.Unlock()
	}
	select {
	case l.ready <- id:
	default:
	}
	return nil
}

func (l *lifecycle) Exit(ctx context.Context, ev *herdv1.ExitEvent) error {
	if !ev.GetExitedAfterDisconnect() {
		l.mu.Lock()
		fmt.Fprintf(l.stderr, "jobs: worker %d died (code %d, signal %q)\n", ev.GetWorker().GetId(), ev.GetCode(), ev.GetSignal())
		l.mu.Unlock()
	}
	return nil
}

func (l *lifecycle) Error(ctx context.Context, ev *herdv1.ErrorEvent) error {
	l.mu.Lock()
	fmt.Fprintf(l.stderr, "jobs: worker %d: %s: %s\n", ev.GetWorker().GetId(), runtime.Code(ev.GetCode()), ev.GetMessage())
	l.mu.Unlock()
	return nil
}

// result is what became of one job.
type result struct {
	worker uint64
	digest []byte
	err    error
}

func primary(cfg *config, stdout, stderr io.Writer) int {
	if cfg.workers < 1 || cfg.jobs < 0 || cfg.rounds < 1 || cfg.rounds > 1<<32-1 {
		fmt.Fprintln(stderr, "jobs: need -workers >= 1, -jobs >= 0, -rounds in 1..2^32-1")
		return 2
	}
	ctx := context.Background()
	p := runtime.NewPrimary()
	track := &tracker{jobs: make(map[jobRun]*seen)}
	life := &lifecycle{ready: make(chan uint64, cfg.workers), first: cfg.workers, stderr: stderr}
	if cfg.killWorker != 0 {
		// Kill the worker halfway through its third job.
		var once sync.Once
		jobsSeen := map[uint64]bool{}
		track.kill = func(w *runtime.Worker, req *jobsv1.ProgressRequest) {
			if w.ID() != cfg.killWorker {
				return
			}
			jobsSeen[req.GetJobId()] = true // only this worker's drainer runs this
			if len(jobsSeen) == 3 && req.GetDone() >= req.GetTotal()/2 && req.GetDone() < req.GetTotal() {
				once.Do(func() {
					life.mu.Lock()
					fmt.Fprintf(stderr, "jobs: killing worker %d during job %d\n", w.ID(), req.GetJobId())
					life.mu.Unlock()
					w.Kill(syscall.SIGKILL)
				})
			}
		}
	}
	if err := errors.Join(
		jobsv1herd.RegisterProgressServiceHandler(p, track),
		herdv1herd.RegisterEventServiceHandler(p, life),
	); err != nil {
		fmt.Fprintln(stderr, "jobs:", err)
		return 1
	}
	// Job workers never listen: they are ready once online.
	pool := runtime.NewPool(p, runtime.WithPoolSize(cfg.workers), runtime.WithReadiness(runtime.ReadyOnOnline))
	if err := pool.Start(ctx); err != nil {
		fmt.Fprintln(stderr, "jobs:", err)
		return stop(pool, 1)
	}
	for range cfg.workers {
		select {
		case <-life.ready:
		case <-pool.Done():
			fmt.Fprintln(stderr, "jobs: the pool ended:", pool.Err())
			return 1
		case <-time.After(30 * time.Second):
			fmt.Fprintln(stderr, "jobs: workers did not become ready")
			return stop(pool, 1)
		}
	}

	jobs := make([]*jobsv1.Job, cfg.jobs)
	for i := range jobs {
		jobs[i] = &jobsv1.Job{Id: uint64(i + 1), Seed: fmt.Appendf(nil, "job-%d", i+1), Rounds: uint32(cfg.rounds)}
	}
	// Round-robin over the slots: job i goes to the worker in slot i mod N;
	// 2N dispatchers keep about two calls in flight per worker, so that
	// each has its next job queued while it reports. A job whose worker
	// died is retried on the next ready worker.
	results := make([]result, len(jobs))
	queue := make(chan int)
	var wg sync.WaitGroup
	for range 2 * cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range queue {
				results[i] = runJob(ctx, pool, i, jobs[i], life)
			}
		}()
	}
	go func() {
		for i := range jobs {
			queue <- i
		}
		close(queue)
	}()
	// The primary's own computation, meanwhile.
	want := make([][]byte, len(jobs))
	for i, job := range jobs {
		want[i] = compute(job, nil)
	}
	wg.Wait()

	// A worker that died is being replaced: let the pool be whole again
	// before the stop, so that the replacement is seen.
	whole := time.After(30 * time.Second)
wait:
	for len(pool.ReadyWorkers()) < cfg.workers {
		select {
		case <-life.ready:
		case <-pool.Done():
			break wait
		case <-whole:
			fmt.Fprintln(stderr, "jobs: the pool did not get back to", cfg.workers, "ready workers")
			break wait
		}
	}

	// Stopping disconnects every worker and waits for its exit event, which
	// comes after everything it sent: every progress report is in.
	if code := stop(pool, 0); code != 0 {
		return code
	}

	ok := 0
	for i, job := range jobs {
		r := results[i]
		track.mu.Lock()
		s := track.jobs[jobRun{job.GetId(), r.worker}]
		track.mu.Unlock()
		var problem string
		switch {
		case r.err != nil:
			problem = r.err.Error()
		case !bytes.Equal(r.digest, want[i]):
			problem = fmt.Sprintf("digest %x, want %x", r.digest, want[i])
		case s == nil || s.done != job.GetRounds() || s.total != job.GetRounds():
			problem = "no final progress report"
		case len(s.problems) > 0:
			problem = s.problems[0]
		}
		if problem != "" {
			fmt.Fprintf(stderr, "jobs: job %d on worker %d failed: %s\n", job.GetId(), r.worker, problem)
			continue
		}
		ok++
	}
	failed := len(jobs) - ok
	fmt.Fprintf(stdout, "jobs=%d ok=%d failed=%d workers=%d\n", len(jobs), ok, failed, cfg.workers)
	if failed > 0 {
		return 1
	}
	return 0
}

// maxAttempts bounds how often one job is run.
const maxAttempts = 5

// runJob runs job i on the worker of slot i mod N, and again on the next
// ready worker when the one it ran on died (CodeUnavailable): jobs are
// idempotent.
func runJob(ctx context.Context, pool *runtime.Pool, i int, job *jobsv1.Job, life *lifecycle) result {
	var r result
	for attempt := range maxAttempts {
		ws := pool.ReadyWorkers()
		if len(ws) == 0 {
			// Every worker is being replaced: wait for one to be ready.
			select {
			case <-life.ready:
			case <-pool.Done():
				return result{err: fmt.Errorf("the pool ended: %v", pool.Err())}
			case <-time.After(30 * time.Second):
				return result{err: errors.New("no ready worker")}
			}
			continue
		}
		w := ws[(i+attempt)%len(ws)]
		res, err := jobsv1herd.NewJobServiceClient(w).Run(ctx, &jobsv1.RunRequest{Job: job})
		r = result{worker: w.ID(), err: err}
		if err == nil {
			r.digest = res.GetDigest()
			return r
		}
		if runtime.CodeOf(err) != runtime.CodeUnavailable {
			return r
		}
		life.mu.Lock()
		fmt.Fprintf(life.stderr, "jobs: job %d: worker %d is gone (%v); retrying\n", job.GetId(), w.ID(), err)
		life.mu.Unlock()
	}
	return r
}

// stop stops the pool gracefully and returns code, or 1 when the stop
// failed.
func stop(pool *runtime.Pool, code int) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pool.Stop(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "jobs: stop:", err)
		return 1
	}
	return code
}
