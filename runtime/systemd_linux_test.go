package runtime_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// The systemd test's roles. The test starts the test binary with two
// listening sockets as descriptors 3 and 4 and LISTEN_FDS=2,
// LISTEN_FDNAMES=web:admin, in role systemd-activator: it sets LISTEN_PID to
// its own PID and execs itself (keeping its PID and descriptors) in role
// systemd-primary, as systemd does between fork and exec.
func systemdActivatorMain() int {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, herdtest.EnvRole+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, "LISTEN_PID="+strconv.Itoa(os.Getpid()), herdtest.EnvRole+"=systemd-primary")
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, os.Args, env)
	}
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 2
}

// listenEnv lists this process's LISTEN_* variables.
func listenEnv() string {
	var vs []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LISTEN_") {
			vs = append(vs, kv)
		}
	}
	return "[" + strings.Join(vs, " ") + "]"
}

// socketInodes lists the inodes of the sockets among this process's
// descriptors.
func socketInodes() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var inos []string
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inos = append(inos, strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]"))
		}
	}
	return strings.Join(inos, ",")
}

// systemdPrimaryMain is the primary systemd started: it forks one worker,
// prints what its descriptors 3 and 4 look like and what the worker
// reported, then serves until SIGTERM and disconnects.
func systemdPrimaryMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	p := runtime.NewPrimary(herdtest.WorkerRole("systemd"))
	report := make(chan string, 1)
	p.Register(runtime.NewUnaryHandler(testv1herd.TestServiceReportProcedure, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
		report <- req.GetMessage()
		return &testv1.ReportResponse{}, nil
	}))
	var cloexec []string
	for _, fd := range []int{3, 4} {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		cloexec = append(cloexec, fmt.Sprintf("%t", err == nil && flags&unix.FD_CLOEXEC != 0))
	}
	fmt.Printf("primary cloexec=%s env=%s\n", strings.Join(cloexec, ","), listenEnv())
	if _, err := p.Fork(ctx); err != nil {
		fmt.Println("fork:", err)
		return 2
	}
	select {
	case r := <-report:
		fmt.Println("worker", r)
	case <-ctx.Done():
		fmt.Println("no report")
		return 3
	}
	select {
	case <-sig:
	case <-ctx.Done():
	}
	p.Disconnect(ctx)
	p.Wait(ctx)
	return 0
}

// systemdWorkerMain reports the sockets and LISTEN_* variables it
// inherited, then serves the two systemd sockets by name and by number.
func systemdWorkerMain() int {
	inherited, env := socketInodes(), listenEnv()
	ctx := context.Background()
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		return 10
	}
	if err := self.Start(ctx); err != nil {
		return 12
	}
	rr := runtime.WithSchedulingPolicy(runtime.SchedRoundRobin)
	web, werr := runtime.Listen(ctx, "tcp", "web", runtime.WithListenFDName("web"), rr)
	admin, aerr := runtime.Listen(ctx, "tcp", "admin", runtime.WithListenFD(4), rr)
	for name, ln := range map[string]net.Listener{"web": web, "admin": admin} {
		if ln != nil {
			go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		}
	}
	msg := fmt.Sprintf("sockets=%s env=%s web=%v admin=%v", inherited, env, werr, aerr)
	if err := self.Call(ctx, testv1herd.TestServiceReportProcedure, &testv1.ReportRequest{Message: msg}, &testv1.ReportResponse{}); err != nil {
		return 13
	}
	<-self.Done()
	select {}
}

// TestSystemdSocketsStayInPrimary: the sockets systemd passes to the
// primary are taken over as go-systemd's activation does (close-on-exec,
// LISTEN_* removed from the environment), so no worker inherits them
// (descriptor 3 is a worker's link, but descriptor 4 and beyond were
// inherited by every worker), and workers still listen on them by name
// and by number.
func TestSystemdSocketsStayInPrimary(t *testing.T) {
	herdtest.CheckLeaks(t)
	var files []*os.File
	var addrs, inos []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		addrs = append(addrs, ln.Addr().String())
		inos = append(inos, strconv.FormatUint(st.Ino, 10))
	}
	p := herdtest.Start(t, "systemd-activator", herdtest.WithArgs("-test.run=^$"),
		herdtest.WithEnv("LISTEN_FDS=2", "LISTEN_FDNAMES=web:admin", "GOCOVERDIR="), herdtest.WithExtraFiles(files...))
	p.Timeout = waitLimit
	for _, f := range files {
		f.Close() // the primary holds the sockets now
	}
	defer func() {
		if t.Failed() {
			return // the cleanup kills the primary
		}
		p.Signal(syscall.SIGTERM)
		p.WaitExit(0)
	}()
	next := func() string {
		t.Helper()
		return p.WaitLine("") // the next line
	}
	if got, want := next(), "primary cloexec=true,true env=[]"; got != want {
		t.Errorf("primary: %q, want %q", got, want)
	}
	got := next()
	f := strings.Fields(got)
	if len(f) != 5 || f[0] != "worker" || f[2] != "env=[]" || f[3] != "web=<nil>" || f[4] != "admin=<nil>" {
		t.Fatalf("worker: %q, want env=[] and both listens working", got)
	}
	sockets := strings.Split(strings.TrimPrefix(f[1], "sockets="), ",")
	for i, ino := range inos {
		if slices.Contains(sockets, ino) {
			t.Errorf("the worker inherited systemd socket %d (inode %s): its sockets %v", i+3, ino, sockets)
		}
	}
	for i, want := range []string{"web", "admin"} {
		if body, err := rawGet("tcp", addrs[i], "/"); err != nil || body != want {
			t.Errorf("GET %s (%s): %q, %v", addrs[i], want, body, err)
		}
	}
}
