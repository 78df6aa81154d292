// Command jobs farms typed jobs out to worker processes.
//
//	go run ./examples/jobs [-workers N] [-jobs M] [-rounds R]
//
// The primary forks N workers (default 4) and sends M jobs (default 100),
// spread round-robin over the workers, as request/response calls of the
// generated JobService client, two in flight per worker. A job is R rounds
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
// Fault injection: -fault-worker ID makes the worker with that ID flip a
// bit of every digest it returns, so that the primary's checks can be seen
// to fail. Workers receive the primary's arguments, so they see the flag.
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
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

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
}

func flags(stderr io.Writer) (*flag.FlagSet, *config) {
	cfg := &config{}
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.workers, "workers", 4, "worker processes to fork")
	fs.IntVar(&cfg.jobs, "jobs", 100, "jobs to run")
	fs.UintVar(&cfg.rounds, "rounds", 20000, "SHA-256 rounds per job")
	fs.Uint64Var(&cfg.faultWorker, "fault-worker", 0, "fault injection: the worker with this ID returns wrong digests")
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
}

func (r *runner) Run(ctx context.Context, req *jobsv1.RunRequest) (*jobsv1.RunResponse, error) {
	job := req.GetJob()
	if job.GetRounds() == 0 {
		return nil, runtime.Errorf(runtime.CodeInvalidArgument, "job %d has no rounds", job.GetId())
	}
	var sendErr error
	digest := compute(job, func(done uint32) {
		if sendErr == nil {
			sendErr = r.progress.SendProgress(ctx, &jobsv1.ProgressRequest{JobId: job.GetId(), Done: done, Total: job.GetRounds()})
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

// tracker serves ProgressService on the primary and records, per job, the
// last progress report and the worker it came from.
type tracker struct {
	jobsv1herd.UnimplementedProgressServiceHandler
	mu   sync.Mutex
	jobs map[uint64]*seen
}

type seen struct {
	worker   uint64
	done     uint32
	total    uint32
	problems []string
}

func (t *tracker) Progress(ctx context.Context, req *jobsv1.ProgressRequest) (*jobsv1.ProgressResponse, error) {
	w, ok := runtime.WorkerFromContext(ctx)
	if !ok {
		return nil, runtime.Errorf(runtime.CodeInternal, "progress from nowhere")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.jobs[req.GetJobId()]
	if s == nil {
		s = &seen{worker: w.ID()}
		t.jobs[req.GetJobId()] = s
	}
	switch {
	case s.worker != w.ID():
		s.problems = append(s.problems, fmt.Sprintf("progress from worker %d, job ran on worker %d", w.ID(), s.worker))
	case req.GetDone() < s.done:
		s.problems = append(s.problems, fmt.Sprintf("progress went back from %d to %d", s.done, req.GetDone()))
	}
	s.done, s.total = req.GetDone(), req.GetTotal()
	return &jobsv1.ProgressResponse{}, nil
}

// lifecycle follows the workers' events: online, and exits before the end.
type lifecycle struct {
	herdv1herd.UnimplementedEventServiceHandler
	online chan uint64
	exited chan uint64
	stderr io.Writer
	mu     sync.Mutex
}

func (l *lifecycle) Online(ctx context.Context, ev *herdv1.OnlineEvent) (*emptypb.Empty, error) {
	l.online <- ev.GetWorker().GetId()
	return &emptypb.Empty{}, nil
}

func (l *lifecycle) Exit(ctx context.Context, ev *herdv1.ExitEvent) (*emptypb.Empty, error) {
	select {
	case l.exited <- ev.GetWorker().GetId():
	default:
	}
	return &emptypb.Empty{}, nil
}

func (l *lifecycle) Error(ctx context.Context, ev *herdv1.ErrorEvent) (*emptypb.Empty, error) {
	l.mu.Lock()
	fmt.Fprintf(l.stderr, "jobs: worker %d: %s: %s\n", ev.GetWorker().GetId(), runtime.Code(ev.GetCode()), ev.GetMessage())
	l.mu.Unlock()
	return &emptypb.Empty{}, nil
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
	track := &tracker{jobs: make(map[uint64]*seen)}
	life := &lifecycle{online: make(chan uint64, cfg.workers), exited: make(chan uint64, cfg.workers), stderr: stderr}
	if err := errors.Join(
		jobsv1herd.RegisterProgressServiceHandler(p, track),
		herdv1herd.RegisterEventServiceHandler(p, life),
	); err != nil {
		fmt.Fprintln(stderr, "jobs:", err)
		return 1
	}
	var workers []*runtime.Worker
	for range cfg.workers {
		w, err := p.Fork(ctx)
		if err != nil {
			fmt.Fprintln(stderr, "jobs:", err)
			return stop(p, 1)
		}
		workers = append(workers, w)
	}
	for range cfg.workers {
		select {
		case <-life.online:
		case id := <-life.exited:
			fmt.Fprintf(stderr, "jobs: worker %d exited before it came online\n", id)
			return stop(p, 1)
		case <-time.After(30 * time.Second):
			fmt.Fprintln(stderr, "jobs: workers did not come online")
			return stop(p, 1)
		}
	}

	jobs := make([]*jobsv1.Job, cfg.jobs)
	for i := range jobs {
		jobs[i] = &jobsv1.Job{Id: uint64(i + 1), Seed: fmt.Appendf(nil, "job-%d", i+1), Rounds: uint32(cfg.rounds)}
	}
	// Round-robin: job i goes to worker i mod N; each worker has two calls
	// in flight, so that it has its next job queued while it reports.
	results := make([]result, len(jobs))
	const perWorker = 2
	var wg sync.WaitGroup
	for wi, w := range workers {
		client := jobsv1herd.NewJobServiceClient(w)
		queue := make(chan int)
		for range perWorker {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range queue {
					res, err := client.Run(ctx, &jobsv1.RunRequest{Job: jobs[i]})
					results[i] = result{worker: w.ID(), err: err}
					if err == nil {
						results[i].digest = res.GetDigest()
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(queue)
			for i := wi; i < len(jobs); i += len(workers) {
				queue <- i
			}
		}()
	}
	// The primary's own computation, meanwhile.
	want := make([][]byte, len(jobs))
	for i, job := range jobs {
		want[i] = compute(job, nil)
	}
	wg.Wait()

	// Disconnecting waits for each worker's exit, and a worker's exit event
	// comes after everything it sent: every progress report is in.
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Disconnect(dctx); err != nil {
		fmt.Fprintln(stderr, "jobs: disconnect:", err)
	}
	if err := p.Wait(dctx); err != nil {
		fmt.Fprintln(stderr, "jobs: wait:", err)
	}

	ok := 0
	for i, job := range jobs {
		r := results[i]
		track.mu.Lock()
		s := track.jobs[job.GetId()]
		track.mu.Unlock()
		var problem string
		switch {
		case r.err != nil:
			problem = r.err.Error()
		case !bytes.Equal(r.digest, want[i]):
			problem = fmt.Sprintf("digest %x, want %x", r.digest, want[i])
		case s == nil || s.done != job.GetRounds() || s.total != job.GetRounds():
			problem = "no final progress report"
		case s.worker != r.worker:
			problem = fmt.Sprintf("progress from worker %d, result from worker %d", s.worker, r.worker)
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
	fmt.Fprintf(stdout, "jobs=%d ok=%d failed=%d workers=%d\n", len(jobs), ok, failed, len(workers))
	if failed > 0 {
		return 1
	}
	return 0
}

// stop disconnects every worker and returns code.
func stop(p *runtime.Primary, code int) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.Disconnect(ctx)
	p.Wait(ctx)
	return code
}
