//go:build unix

package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// The test binary is its own worker and, for the tests that kill or signal
// a primary, its own primary: every process a test starts plays one of the
// roles below, named by herdtest.EnvRole (herdtest.ForkRole and
// herdtest.WorkerRole for workers, herdtest.Start for primaries and
// programs), and herdtest.Main runs it instead of the tests.
// A worker forked without a role fails at once instead of re-running the
// tests. This table is the only place that maps roles to code.
func TestMain(m *testing.M) {
	herdtest.Main(m, testRoles())
}

// testRoles is the role table of the runtime's tests: the worker roles, then
// the primary roles, then the roles of the Linux-only tests.
func testRoles() herdtest.Roles {
	roles := herdtest.Roles{
		// workerMain's behaviours (see its switch).
		"idle":           func() int { return workerMain("idle") },
		"exit3":          func() int { return workerMain("exit3") },
		"panic":          func() int { return workerMain("panic") },
		"selfdisconnect": func() int { return workerMain("selfdisconnect") },
		"selfkill":       func() int { return workerMain("selfkill") },
		"env":            func() int { return workerMain("env") },
		"cwd":            func() int { return workerMain("cwd") },
		"extrafd":        func() int { return workerMain("extrafd") },
		"listenpriv":     func() int { return workerMain("listenpriv") },
		"uid":            func() int { return workerMain("uid") },
		"print":          func() int { return workerMain("print") },
		"burst":          func() int { return workerMain("burst") },
		"hooks":          func() int { return workerMain("hooks") },
		"busy":           func() int { return workerMain("busy") },
		"garbage":        func() int { return workerMain("garbage") },
		"nostart":        func() int { return workerMain("nostart") },

		// The examples' workers (example_test.go).
		"worker":  func() int { return workerMain("idle") },
		"echo":    typedWorkerMain,
		"greeter": greeterWorker,
		"crash":   func() int { return workerMain("exit3") },

		// Workers of the tests of one concern, in their files.
		"typed":               typedWorkerMain,       // testservice_test.go
		"ctl":                 listenWorkerMain,      // listen_worker_test.go
		"listen-before-start": listenBeforeStartMain, // listen_start_test.go
		"slow-start":          slowStartWorkerMain,   // listen_early_test.go
		"sendmissing":         sendmissingWorker,     // lifecycle_test.go
		"partial":             partialOutputMain,     // logging_test.go
		"bootcrash":           bootcrashWorker,       // pool_test.go
		"ready":               readyWorker,           // pool_test.go
		"serve":               serveWorkerMain,       // pool_test.go
		"stubborn":            stubbornWorker,        // pool_test.go
		"stuckdrain":          stuckdrainWorker,      // pool_test.go
		"crashids":            crashidsWorker,        // pool_reload_test.go
		"inflight":            inflightWorker,        // signal_test.go
		"nostopsignals":       noStopSignalsWorker,   // signal_test.go

		// Primaries and programs, started by the tests.
		"primary":              func() int { return subPrimaryMain(false) },
		"primary-exit1":        func() int { return subPrimaryMain(true) },
		"graceful-primary":     gracefulPrimary,         // signal_test.go
		"unprivileged-primary": unprivilegedPrimaryMain, // privileged_test.go
		"bench-single":         benchSingleMain,         // listen_bench_test.go
		"bench-cluster":        benchClusterMain,        // listen_bench_test.go
	}
	maps.Copy(roles, linuxRoles)
	return roles
}

// workerMain is the worker side of the tests' general-purpose roles; mode
// (the role's name) picks the behaviour.
func workerMain(mode string) int {
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
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		return 10
	}
	// It serves TestService, and reports to the primary's.
	svc := &testService{self: self, selfPeer: testv1herd.NewTestServiceClient(self)}
	if err := testv1herd.RegisterTestServiceHandler(self, svc); err != nil {
		return 11
	}
	if err := self.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Start:", err)
		return 12
	}
	report := func(msg string) {
		if _, err := svc.selfPeer.Report(ctx, &testv1.ReportRequest{Message: msg}); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
		}
	}
	switch mode {
	case "idle":
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
			if err := svc.selfPeer.SendReport(ctx, &testv1.ReportRequest{Message: fmt.Sprint(i)}); err != nil {
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

// envWorkerRole names the role of the workers of the "primary" roles.
const envWorkerRole = "HERD_TEST_WORKER_ROLE"

// subPrimaryMain is a primary in a child process of the test, for the tests
// that kill a primary: it forks two workers in the role envWorkerRole names,
// prints their PIDs once they are online, and then waits for SIGTERM (to be
// killed), or with exit1 exits with status 1.
func subPrimaryMain(exit1 bool) int {
	ctx := context.Background()
	p := runtime.NewPrimary(herdtest.WorkerRole(os.Getenv(envWorkerRole)))
	online := make(chan uint64, 2)
	p.Register(
		runtime.NewUnaryHandler(testv1herd.TestServiceReportProcedure, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
			w, _ := runtime.WorkerFromContext(ctx)
			online <- w.ID()
			return &testv1.ReportResponse{}, nil
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
	if exit1 {
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	return 0
}
