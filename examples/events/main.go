// Command events is a small cluster console, and herd's black-box contract
// for the lifecycle of workers.
//
//	go run ./examples/events [-workers N] [-exec PATH [-- ARGS]]
//
// It forks N workers (default 2; -exec runs another program as the worker),
// prints every cluster event as one logfmt line on stdout, for example
//
//	event=online worker=1 pid=4242
//	event=exit worker=1 pid=4242 code=-1 signal=SIGKILL after_disconnect=false cause=signal
//
// and reads commands from stdin, one per line:
//
//	fork              fork one more worker
//	kill ID [SIGNAL]  send a signal to a worker (default SIGTERM)
//	disconnect ID     disconnect a worker gracefully
//	quit              disconnect every worker, print their exits, then event=done
//
// EOF on stdin is ignored; quit, SIGINT or SIGTERM end the console. A worker
// that fails or misbehaves never stops it.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
)

func main() {
	if runtime.IsWorker() {
		os.Exit(worker())
	}
	os.Exit(primary(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// worker is the default worker: it comes online and waits to be
// disconnected (the runtime then exits the process).
func worker() int {
	self, err := runtime.NewSelf()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := self.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-self.Done()
	return 0
}

func primary(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workers := fs.Int("workers", 2, "workers to fork at start")
	execPath := fs.String("exec", "", "program to run as the worker (default: this one)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var opts []runtime.PrimaryOption
	if *execPath != "" {
		opts = append(opts, runtime.WithExec(*execPath, fs.Args()...))
	}
	p := runtime.NewPrimary(opts...)
	out := &printer{w: stdout}
	if err := herdv1herd.RegisterEventServiceHandler(p, out); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx := context.Background()
	fork := func() {
		if _, err := p.Fork(ctx); err != nil {
			// The error event has been printed; the console goes on.
			fmt.Fprintln(stderr, err)
		}
	}
	for range *workers {
		fork()
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		// EOF on stdin is ignored: the console runs until quit or a signal.
	}()
loop:
	for {
		select {
		case <-sigs:
			break loop
		case line := <-lines:
			if quit := command(ctx, p, line, fork, stderr); quit {
				break loop
			}
		}
	}
	// Disconnect everyone, killing whoever is still there after the
	// deadline, and wait until every exit has been printed.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Disconnect(dctx); err != nil {
		fmt.Fprintln(stderr, err)
	}
	if err := p.Wait(ctx); err != nil {
		fmt.Fprintln(stderr, err)
	}
	out.line("event=done")
	return 0
}

// command runs one console command and reports whether it was quit.
func command(ctx context.Context, p *runtime.Primary, line string, fork func(), stderr io.Writer) bool {
	f := strings.Fields(line)
	if len(f) == 0 {
		return false
	}
	worker := func() *runtime.Worker {
		if len(f) < 2 {
			fmt.Fprintf(stderr, "%s: missing worker ID\n", f[0])
			return nil
		}
		id, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "%s: bad worker ID %q\n", f[0], f[1])
			return nil
		}
		w, ok := p.Worker(id)
		if !ok {
			fmt.Fprintf(stderr, "%s: no worker %d\n", f[0], id)
		}
		return w
	}
	switch f[0] {
	case "fork":
		fork()
	case "kill":
		w := worker()
		if w == nil {
			return false
		}
		sig := syscall.SIGTERM
		if len(f) > 2 {
			s, err := runtime.ParseSignal(f[2])
			if err != nil {
				fmt.Fprintln(stderr, err)
				return false
			}
			sig = s
		}
		if err := w.Kill(sig); err != nil {
			fmt.Fprintln(stderr, err)
		}
	case "disconnect":
		if w := worker(); w != nil {
			go func() {
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if err := w.Disconnect(dctx); err != nil {
					fmt.Fprintln(stderr, err)
				}
			}()
		}
	case "quit":
		return true
	default:
		fmt.Fprintf(stderr, "unknown command %q (fork, kill ID [SIGNAL], disconnect ID, quit)\n", f[0])
	}
	return false
}

// printer prints cluster events as logfmt lines. Events of different
// workers are handled concurrently, so writes are serialised.
type printer struct {
	herdv1herd.UnimplementedEventServiceHandler
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, s)
}

func who(w *herdv1.Worker) string {
	return fmt.Sprintf("worker=%d pid=%d", w.GetId(), w.GetPid())
}

// Fork implements herdv1herd.EventServiceHandler.
func (p *printer) Fork(ctx context.Context, ev *herdv1.ForkEvent) error {
	p.line("event=fork " + who(ev.GetWorker()))
	return nil
}

// Online implements herdv1herd.EventServiceHandler.
func (p *printer) Online(ctx context.Context, ev *herdv1.OnlineEvent) error {
	p.line("event=online " + who(ev.GetWorker()))
	return nil
}

// Listening implements herdv1herd.EventServiceHandler.
func (p *printer) Listening(ctx context.Context, ev *herdv1.ListeningEvent) error {
	a := ev.GetAddress()
	p.line(fmt.Sprintf("event=listening %s network=%s address=%s port=%d", who(ev.GetWorker()), a.GetNetwork(), quote(a.GetAddress()), a.GetPort()))
	return nil
}

// Disconnect implements herdv1herd.EventServiceHandler.
func (p *printer) Disconnect(ctx context.Context, ev *herdv1.DisconnectEvent) error {
	p.line("event=disconnect " + who(ev.GetWorker()))
	return nil
}

// Exit implements herdv1herd.EventServiceHandler.
func (p *printer) Exit(ctx context.Context, ev *herdv1.ExitEvent) error {
	cause := strings.ToLower(strings.TrimPrefix(ev.GetCause().String(), "EXIT_CAUSE_"))
	p.line(fmt.Sprintf("event=exit %s code=%d signal=%s after_disconnect=%t cause=%s",
		who(ev.GetWorker()), ev.GetCode(), ev.GetSignal(), ev.GetExitedAfterDisconnect(), cause))
	return nil
}

// Error implements herdv1herd.EventServiceHandler.
func (p *printer) Error(ctx context.Context, ev *herdv1.ErrorEvent) error {
	p.line(fmt.Sprintf("event=error %s code=%s message=%s", who(ev.GetWorker()), runtime.Code(ev.GetCode()), quote(ev.GetMessage())))
	return nil
}

// quote quotes a logfmt value when it needs it.
func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " \"=\t\n") {
		return strconv.Quote(s)
	}
	return s
}
