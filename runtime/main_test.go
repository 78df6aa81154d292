//go:build unix

package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// The test binary is its own worker (and, for the parent-death tests, its
// own primary): TestMain checks the sentinels and runs that side instead of
// the tests. A worker runs workerMain (HERD_TEST_MODE picks what it does),
// whatever role its primary was started in, unless it was forked in one of
// the examples' roles (herdtest.WorkerRole). The primaries started by
// herdtest.Start have herdtest roles, those started by hand HERD_TEST_ROLE
// (still to move to herdtest).
func TestMain(m *testing.M) {
	if _, example := exampleRoles[os.Getenv(herdtest.EnvRole)]; runtime.IsWorker() && !example {
		os.Exit(workerMain(os.Getenv("HERD_TEST_MODE")))
	}
	if os.Getenv("HERD_TEST_ROLE") == "unprivileged-primary" {
		os.Exit(unprivilegedPrimaryMain())
	}
	if os.Getenv("HERD_TEST_ROLE") == "primary" {
		os.Exit(subPrimaryMain(os.Getenv("HERD_TEST_PRIMARY_MODE")))
	}
	roles := herdtest.Roles{
		"primary": func() int { return subPrimaryMain(os.Getenv("HERD_TEST_PRIMARY_MODE")) },
	}
	for name, fn := range exampleRoles {
		roles[name] = fn
	}
	herdtest.Main(m, roles)
}

// Test procedures, with herd.v1.ErrorEvent as a convenient message that
// carries a string.
const (
	reportProcedure = "/herdtest.Test/Report"
	echoProcedure   = "/herdtest.Test/Echo"
	sleepProcedure  = "/herdtest.Test/Sleep"
)

func echo(ctx context.Context, req *herdv1.ErrorEvent) (*herdv1.ErrorEvent, error) {
	return &herdv1.ErrorEvent{Message: "echo:" + req.GetMessage()}, nil
}

// workerModes holds worker modes defined in other test files, which run
// instead of workerMain's own.
var workerModes = map[string]func() int{}

// workerMain is the worker side of the tests; mode picks the behaviour.
func workerMain(mode string) int {
	if fn, ok := workerModes[mode]; ok {
		return fn()
	}
	ctx := context.Background()
	if mode == "garbage" {
		// Write a frame header that announces an impossible size, then wait
		// for the primary to close the link.
		f := os.NewFile(3, "link")
		f.Write([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
		buf := make([]byte, 1)
		f.Read(buf)
		return 0
	}
	if mode == "nostart" {
		// Never handshake: hold the link open until killed.
		select {}
	}
	var self *runtime.Self
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		return 10
	}
	if err := self.Register(
		runtime.NewUnaryHandler(echoProcedure, func(ctx context.Context, req *herdv1.ErrorEvent) (*herdv1.ErrorEvent, error) {
			if req.GetMessage() == "disconnect yourself" {
				// Start a worker-side disconnect while the primary starts its own.
				go self.Disconnect(context.Background())
			}
			return echo(ctx, req)
		}),
		runtime.NewUnaryHandler(sleepProcedure, func(ctx context.Context, req *herdv1.ErrorEvent) (*herdv1.ErrorEvent, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}),
	); err != nil {
		return 11
	}
	if err := self.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Start:", err)
		return 12
	}
	report := func(msg string) {
		if err := self.Call(ctx, reportProcedure, &herdv1.ErrorEvent{Message: msg}, &herdv1.ErrorEvent{}); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
		}
	}
	switch mode {
	case "", "idle":
	case "exit3":
		os.Exit(3)
	case "panic":
		panic("boom")
	case "selfdisconnect":
		if err := self.Disconnect(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "Disconnect:", err)
		}
	case "selfkill":
		self.Kill()
	case "env":
		report(fmt.Sprintf("HERD_TEST_VALUE=%q sentinel=%q", os.Getenv("HERD_TEST_VALUE"), os.Getenv(runtime.EnvWorkerID)))
	case "cwd":
		wd, _ := os.Getwd()
		report(wd)
	case "extrafd":
		// Descriptor 4 is the first of the primary's extra files.
		f := os.NewFile(4, "extra")
		_, err := f.WriteString("written by the worker\n")
		f.Close()
		report(fmt.Sprint(err))
	case "listenpriv":
		_, err := runtime.Listen(ctx, "tcp", "127.0.0.1:1")
		report(fmt.Sprintf("eacces=%t", errors.Is(err, syscall.EACCES)))
	case "uid":
		report(fmt.Sprintf("uid=%d gid=%d", os.Getuid(), os.Getgid()))
	case "print":
		fmt.Println("hello from stdout")
		fmt.Fprintln(os.Stderr, "hello from stderr")
		os.Stdout.Close()
		os.Stderr.Close()
	case "burst":
		// Many fire-and-forget messages, then exit at once: the primary
		// must handle every one before the exit event.
		for i := range 500 {
			if err := self.Send(ctx, reportProcedure, &herdv1.ErrorEvent{Message: fmt.Sprint(i)}); err != nil {
				return 13
			}
		}
		self.Kill()
	case "hooks":
		self.OnDisconnect(func(ctx context.Context) error {
			report("draining")
			return nil
		})
		report("ready")
	case "busy":
		// Every goroutine spins; only the kernel can end this process.
		report("busy")
		for range goruntime.GOMAXPROCS(0) {
			go func() {
				for {
				}
			}()
		}
		for {
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		return 14
	}
	<-self.Done()
	select {}
}

// primaryModes holds primary modes defined in other test files, which run
// instead of subPrimaryMain's own.
var primaryModes = map[string]func() int{}

// subPrimaryMain is a primary in a child process of the test, for the tests
// that kill a primary: it forks two workers, prints their PIDs once they
// are online, and then waits to be killed or exits with status 1.
func subPrimaryMain(mode string) int {
	if fn, ok := primaryModes[mode]; ok {
		return fn()
	}
	ctx := context.Background()
	p := runtime.NewPrimary(runtime.WithEnv("HERD_TEST_MODE=" + os.Getenv("HERD_TEST_WORKER_MODE")))
	online := make(chan uint64, 2)
	p.Register(
		runtime.NewUnaryHandler(reportProcedure, func(ctx context.Context, req *herdv1.ErrorEvent) (*herdv1.ErrorEvent, error) {
			w, _ := runtime.WorkerFromContext(ctx)
			online <- w.ID()
			return &herdv1.ErrorEvent{}, nil
		}),
	)
	var pids []string
	for range 2 {
		w, err := p.Fork(ctx)
		if err != nil {
			fmt.Println("fork:", err)
			return 2
		}
		pids = append(pids, fmt.Sprint(w.PID()))
	}
	<-online
	<-online
	fmt.Println("pids", strings.Join(pids, " "))
	if mode == "exit1" {
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	return 0
}
