//go:build unix

package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// adminClientWorker is role "adminclient": a worker that calls Status on
// the admin socket at $HERD_TEST_ADMIN_PATH and reports the outcome, and
// what it inherited of HERD_ADMIN_SOCKET. With $HERD_TEST_ADMIN_CHILD set,
// a process the worker starts (role "admin-client") tries instead.
func adminClientWorker() int {
	self, ctx := startSelf()
	report := func(msg string) {
		_, _ = testv1herd.NewTestServiceClient(self).Report(ctx, &testv1.ReportRequest{Message: msg})
	}
	path := os.Getenv("HERD_TEST_ADMIN_PATH")
	if os.Getenv("HERD_TEST_ADMIN_CHILD") != "" {
		exe, _ := os.Executable()
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), herdtest.EnvRole+"=admin-client", runtime.EnvAdminSocket+"="+path)
		out, err := cmd.Output()
		report(fmt.Sprintf("child %s %v", strings.TrimSpace(string(out)), err))
		<-self.Done()
		return 0
	}
	msg := fmt.Sprintf("env=%q ", os.Getenv(runtime.EnvAdminSocket))
	if conn, err := runtime.DialAdmin(ctx, path); err != nil {
		msg += "dial " + err.Error()
	} else {
		_, err := herdv1herd.NewAdminServiceClient(conn).Status(ctx, &herdv1.StatusRequest{})
		msg += fmt.Sprintf("status %s: %v", runtime.CodeOf(err), err)
		conn.Close()
	}
	report(msg)
	<-self.Done()
	return 0
}

// adminClientMain calls Status on $HERD_ADMIN_SOCKET and prints "ok N"
// (N workers), "dial ERRNO" or "call CODE: MESSAGE".
func adminClientMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	conn, err := runtime.DialAdmin(ctx, os.Getenv(runtime.EnvAdminSocket))
	if err != nil {
		var errno syscall.Errno
		errors.As(err, &errno)
		fmt.Printf("dial %s: %v\n", errno.Error(), err)
		return 0
	}
	defer conn.Close()
	st, err := herdv1herd.NewAdminServiceClient(conn).Status(ctx, &herdv1.StatusRequest{})
	if err != nil {
		fmt.Printf("call %s: %v\n", runtime.CodeOf(err), err)
		return 0
	}
	fmt.Printf("ok %d\n", len(st.GetWorkers()))
	return 0
}

// adminPool starts a pool of n idle workers (ready when online) serving an
// admin socket in a new directory, and waits for them to be ready.
func adminPool(t *testing.T, n int, opts ...runtime.AdminOption) (*cluster, *runtime.Pool, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "herd-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	c, pl := newPool(t, "idle", runtime.WithPoolSize(n), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithAdminSocket(sock, opts...))
	startPool(t, pl)
	for i := 1; i <= n; i++ {
		c.rec.waitFor(fmt.Sprintf("ready %d slot=%d", i, i-1))
	}
	return c, pl, sock
}

func dialAdmin(t *testing.T, sock string) herdv1herd.AdminServiceClient {
	t.Helper()
	conn, err := runtime.DialAdmin(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return herdv1herd.NewAdminServiceClient(conn)
}

func adminCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// watcher follows the event stream on its own connection.
type watcher struct {
	t    *testing.T
	c    herdv1herd.AdminServiceClient
	last uint64
	seen []string
}

func newWatcher(t *testing.T, sock string) *watcher {
	w := &watcher{t: t, c: dialAdmin(t, sock)}
	res, err := w.c.Watch(adminCtx(t), &herdv1.WatchRequest{FromNow: true})
	if err != nil {
		t.Fatal(err)
	}
	w.last = res.GetLast()
	return w
}

// waitFor reads events until one whose text starts with prefix.
func (w *watcher) waitFor(prefix string) {
	w.t.Helper()
	ctx := adminCtx(w.t)
	for {
		for i, s := range w.seen {
			if strings.HasPrefix(s, prefix) {
				w.seen = w.seen[i+1:]
				return
			}
		}
		w.seen = nil
		res, err := w.c.Watch(ctx, &herdv1.WatchRequest{After: w.last})
		if err != nil {
			w.t.Fatalf("watch for %q: %v", prefix, err)
		}
		if res.GetMissed() != 0 {
			w.t.Fatalf("missed %d events", res.GetMissed())
		}
		for _, ev := range res.GetEvents() {
			if ev.GetSeq() != w.last+1 {
				w.t.Fatalf("event %d after %d", ev.GetSeq(), w.last)
			}
			w.last = ev.GetSeq()
			w.seen = append(w.seen, eventText(ev))
		}
	}
}

func eventText(ev *herdv1.AdminEvent) string {
	switch e := ev.GetEvent().(type) {
	case *herdv1.AdminEvent_Exit:
		return fmt.Sprintf("exit %d cause=%s", e.Exit.GetWorker().GetId(), e.Exit.GetCause())
	case *herdv1.AdminEvent_Ready:
		return fmt.Sprintf("ready %d slot=%d", e.Ready.GetWorker().GetId(), e.Ready.GetSlot())
	case *herdv1.AdminEvent_Fork:
		return fmt.Sprintf("fork %d", e.Fork.GetWorker().GetId())
	case *herdv1.AdminEvent_ReloadStarted:
		return fmt.Sprintf("reload-started %v", e.ReloadStarted.GetWorkers())
	case *herdv1.AdminEvent_ReloadFinished:
		return fmt.Sprintf("reload-finished %v", e.ReloadFinished.GetWorkers())
	case *herdv1.AdminEvent_RestartScheduled:
		return fmt.Sprintf("restart %d slot=%d", e.RestartScheduled.GetPrevious().GetId(), e.RestartScheduled.GetSlot())
	case *herdv1.AdminEvent_Recycled:
		r := e.Recycled
		return fmt.Sprintf("recycled %d slot=%d reason=%s replacement=%d", r.GetWorker().GetId(), r.GetSlot(), r.GetReason(), r.GetReplacement().GetId())
	}
	return fmt.Sprintf("%T", ev.GetEvent())
}

func statusIDs(st *herdv1.StatusResponse) []uint64 {
	var ids []uint64
	for _, w := range st.GetWorkers() {
		ids = append(ids, w.GetId())
	}
	return ids
}

// TestAdminService drives a pool through the generated client over the
// admin socket: status, kill (the pool replaces the worker, the events say
// so), scale, recycle, disconnect, reload with its progress watched on a
// second connection, and the typed errors of bad requests.
func TestAdminService(t *testing.T) {
	c, pl, sock := adminPool(t, 2)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("admin socket %v, %v; want a socket of mode 0600", fi.Mode(), err)
	}
	if pl.AdminAddr() != sock {
		t.Errorf("AdminAddr %q", pl.AdminAddr())
	}
	admin := dialAdmin(t, sock)
	ctx := adminCtx(t)

	st, err := admin.Status(ctx, &herdv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := statusIDs(st); !slices.Equal(got, []uint64{1, 2}) || st.GetSize() != 2 || st.GetPid() != int64(os.Getpid()) {
		t.Fatalf("status: workers %v size %d pid %d", got, st.GetSize(), st.GetPid())
	}
	for i, w := range st.GetWorkers() {
		pw, _ := c.p.Worker(w.GetId())
		if w.GetSlot() != uint32(i) || w.GetPid() != int64(pw.PID()) || w.GetState() != "online" || !w.GetReady() || w.GetRestarts() != 0 || w.GetLastExit() != nil {
			t.Errorf("status of slot %d: %v", i, w)
		}
		if goruntime.GOOS == "linux" && (w.GetRssBytes() == 0 || st.GetResourcesNote() != "") {
			t.Errorf("slot %d: RSS %d, note %q", i, w.GetRssBytes(), st.GetResourcesNote())
		}
	}

	watch := newWatcher(t, sock)
	res, err := admin.Kill(ctx, &herdv1.KillRequest{Worker: 1, Signal: "KILL"})
	if err != nil || res.GetSignal() != "SIGKILL" || res.GetWorker().GetId() != 1 {
		t.Fatalf("kill: %v, %v", res, err)
	}
	watch.waitFor("exit 1 cause=EXIT_CAUSE_KILLED")
	watch.waitFor("restart 1 slot=0")
	watch.waitFor("ready 3 slot=0")
	st, _ = admin.Status(ctx, &herdv1.StatusRequest{})
	if w := st.GetWorkers()[0]; w.GetId() != 3 || w.GetRestarts() != 1 || w.GetLastExit().GetCause() != herdv1.ExitCause_EXIT_CAUSE_KILLED {
		t.Errorf("slot 0 after the kill: %v", w)
	}

	if sr, err := admin.Scale(ctx, &herdv1.ScaleRequest{Size: 3}); err != nil || sr.GetPrevious() != 2 || sr.GetSize() != 3 {
		t.Fatalf("scale: %v, %v", sr, err)
	}
	watch.waitFor("ready 4 slot=2")

	rr, err := admin.Recycle(ctx, &herdv1.AdminServiceRecycleRequest{Worker: 2})
	if err != nil || rr.GetReplacement().GetId() != 5 || rr.GetSlot() != 1 {
		t.Fatalf("recycle: %v, %v", rr, err)
	}
	watch.waitFor("recycled 2 slot=1 reason=RECYCLE_REASON_OPERATOR replacement=5")
	watch.waitFor("exit 2 cause=EXIT_CAUSE_RECYCLED")

	dr, err := admin.Disconnect(ctx, &herdv1.AdminServiceDisconnectRequest{Worker: 4, Timeout: durationpb.New(waitLimit)})
	if err != nil || dr.GetExit().GetCause() != herdv1.ExitCause_EXIT_CAUSE_CLEAN || !dr.GetExit().GetExitedAfterDisconnect() {
		t.Fatalf("disconnect: %v, %v", dr, err)
	}
	if n := pl.Size(); n != 2 {
		t.Errorf("size %d after a disconnect; want 2 (the slot goes)", n)
	}

	// Reload on one connection, its progress on the other.
	progress := make(chan error, 1)
	go func() {
		w := &watcher{t: t, c: watch.c, last: watch.last, seen: watch.seen}
		for _, want := range []string{"reload-started [3 5]", "ready 6 slot=0", "exit 3 ", "ready 7 slot=1", "exit 5 ", "reload-finished [6 7]"} {
			w.waitFor(want)
		}
		progress <- nil
	}()
	rl, err := admin.Reload(ctx, &herdv1.ReloadRequest{})
	if err != nil || rl.GetAborted() != nil || !slices.Equal(rl.GetWorkers(), []uint64{6, 7}) {
		t.Fatalf("reload: %v, %v", rl, err)
	}
	if err := <-progress; err != nil {
		t.Fatal(err)
	}
	c.rec.waitFor("reload-finished 6,7")

	// Bad requests: typed errors, and nothing changes.
	for name, call := range map[string]struct {
		err  error
		code runtime.Code
	}{
		"kill unknown":     {func() error { _, err := admin.Kill(ctx, &herdv1.KillRequest{Worker: 99}); return err }(), runtime.CodeNotFound},
		"kill bad signal":  {func() error { _, err := admin.Kill(ctx, &herdv1.KillRequest{Worker: 6, Signal: "SIGNOPE"}); return err }(), runtime.CodeInvalidArgument},
		"scale huge":       {func() error { _, err := admin.Scale(ctx, &herdv1.ScaleRequest{Size: 1 << 30}); return err }(), runtime.CodeInvalidArgument},
		"recycle unknown":  {func() error { _, err := admin.Recycle(ctx, &herdv1.AdminServiceRecycleRequest{Worker: 1}); return err }(), runtime.CodeNotFound},
		"disconnect no id": {func() error { _, err := admin.Disconnect(ctx, &herdv1.AdminServiceDisconnectRequest{}); return err }(), runtime.CodeInvalidArgument},
		"disconnect bad to": {func() error {
			_, err := admin.Disconnect(ctx, &herdv1.AdminServiceDisconnectRequest{Worker: 6, Timeout: durationpb.New(-time.Second)})
			return err
		}(), runtime.CodeInvalidArgument},
	} {
		if runtime.CodeOf(call.err) != call.code {
			t.Errorf("%s: %v; want code %s", name, call.err, call.code)
		}
	}
	st, _ = admin.Status(ctx, &herdv1.StatusRequest{})
	if got := statusIDs(st); !slices.Equal(got, []uint64{6, 7}) {
		t.Errorf("workers %v after the bad requests; want [6 7]", got)
	}
	if err := pl.Stop(context.Background()); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after the pool ended: %v", err)
	}
	if _, err := admin.Status(ctx, &herdv1.StatusRequest{}); runtime.CodeOf(err) != runtime.CodeUnavailable {
		t.Errorf("status after the pool ended: %v; want unavailable", err)
	}
}

// TestAdminBadInput: garbage, a huge length prefix, a half frame, a
// client that never speaks and one that sends descriptors each lose their
// own connection only; the pool and a client connected all along are not
// disturbed.
func TestAdminBadInput(t *testing.T) {
	_, pl, sock := adminPool(t, 2, runtime.WithAdminTimeouts(time.Second, time.Minute))
	good := dialAdmin(t, sock)
	ctx := adminCtx(t)
	check := func(after string) {
		t.Helper()
		st, err := good.Status(ctx, &herdv1.StatusRequest{})
		if err != nil {
			t.Fatalf("status after %s: %v", after, err)
		}
		if got := statusIDs(st); !slices.Equal(got, []uint64{1, 2}) {
			t.Fatalf("workers %v after %s", got, after)
		}
	}
	raw := func() *net.UnixConn {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(waitLimit))
		return c
	}
	// expectClosed reads until the primary closes the connection.
	expectClosed := func(c *net.UnixConn, what string) {
		t.Helper()
		defer c.Close()
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s: the primary did not close the connection: %v", what, err)
		}
	}
	for _, tc := range []struct {
		name string
		data []byte
		fds  bool
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"huge length prefix", []byte{0x7f, 0xff, 0xff, 0xff, 1, 2, 3}, false},
		{"half frame", []byte{0, 0, 0, 100, 0x0a, 5, 'h', 'e'}, false},
		{"silent", nil, false},
		{"descriptors", []byte{0, 0, 0, 0}, true},
	} {
		c := raw()
		if tc.fds {
			f, _ := c.File()
			if err := syscall.Sendmsg(int(f.Fd()), tc.data, syscall.UnixRights(int(f.Fd())), nil, 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
		} else if len(tc.data) > 0 {
			if _, err := c.Write(tc.data); err != nil {
				t.Fatal(err)
			}
		}
		expectClosed(c, tc.name)
		check(tc.name)
	}

	// A half frame whose client then hangs up.
	c := raw()
	c.Write([]byte{0, 0, 0, 50, 1, 2})
	c.Close()
	check("a half frame and a hang-up")

	_ = pl
}

// TestAdminClientLimit: clients beyond the limit are refused with a clear
// error; those connected go on.
func TestAdminClientLimit(t *testing.T) {
	_, _, sock := adminPool(t, 1, runtime.WithAdminMaxClients(3))
	ctx := adminCtx(t)
	clients := []herdv1herd.AdminServiceClient{dialAdmin(t, sock), dialAdmin(t, sock), dialAdmin(t, sock)}
	for _, c := range clients {
		if _, err := c.Status(ctx, &herdv1.StatusRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := dialAdmin(t, sock).Status(ctx, &herdv1.StatusRequest{})
	if runtime.CodeOf(err) != runtime.CodeResourceExhausted || !strings.Contains(err.Error(), "too many clients: 3 are connected, at most 3") {
		t.Errorf("a client beyond the limit: %v; want resource_exhausted, too many clients", err)
	}
	for _, c := range clients {
		if _, err := c.Status(ctx, &herdv1.StatusRequest{}); err != nil {
			t.Errorf("a connected client after the refusal: %v", err)
		}
	}
}

// TestAdminRefusesOtherUsers: a client running as another user (nobody;
// the tests run as root) is refused: by the socket file's mode by
// default, and by its credentials when the mode lets it connect, unless
// the allow list names it.
func TestAdminRefusesOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run the client as another user")
	}
	dir, bin := publicTestBinary(t)
	run := func(sock string) string {
		t.Helper()
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), herdtest.EnvRole+"=admin-client", runtime.EnvAdminSocket+"="+sock, "GOCOVERDIR=")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Stderr = os.Stderr
		timer := time.AfterFunc(waitLimit, func() { cmd.Process.Kill() })
		defer timer.Stop()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("admin client as nobody: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	pool := func(opts ...runtime.AdminOption) string {
		sock := filepath.Join(dir, fmt.Sprintf("admin%d.sock", time.Now().UnixNano()))
		_, pl := newPool(t, "idle", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline), runtime.WithAdminSocket(sock, opts...))
		startPool(t, pl)
		return sock
	}

	if got := run(pool()); !strings.HasPrefix(got, "dial permission denied") {
		t.Errorf("nobody on a 0600 socket: %q; want dial permission denied", got)
	}
	if got := run(pool(runtime.WithAdminSocketMode(0o666))); !strings.HasPrefix(got, "call permission_denied") || !strings.Contains(got, "user 65534 may not use this admin socket") {
		t.Errorf("nobody on a 0666 socket: %q; want call permission_denied ... user 65534 may not", got)
	}
	if got := run(pool(runtime.WithAdminSocketMode(0o666), runtime.WithAdminAllowUIDs(nobody))); got != "ok 1" {
		t.Errorf("nobody allowed: %q; want ok 1", got)
	}
}

// TestAdminRefusesWorkers: a worker of the primary, even one running as
// the primary's user, may not drive its siblings through the admin
// socket; and workers do not inherit HERD_ADMIN_SOCKET.
func TestAdminRefusesWorkers(t *testing.T) {
	c, _, sock := adminPool(t, 1)
	t.Setenv(runtime.EnvAdminSocket, sock)
	w, err := c.p.Fork(context.Background(), runtime.WithForkEnv(herdtest.EnvRole+"=adminclient", "HERD_TEST_ADMIN_PATH="+sock))
	if err != nil {
		t.Fatal(err)
	}
	got := c.rec.waitFor(fmt.Sprintf("report %d ", w.ID()))
	want := fmt.Sprintf(`report %d env="" status permission_denied: permission_denied: herd admin: process %d is worker %d of this primary, or a process it started`, w.ID(), w.PID(), w.ID())
	if !strings.HasPrefix(got, want) {
		t.Errorf("got %q\nwant %q...", got, want)
	}
	if goruntime.GOOS != "linux" {
		return // the ancestry is read from /proc
	}
	w, err = c.p.Fork(context.Background(), runtime.WithForkEnv(herdtest.EnvRole+"=adminclient", "HERD_TEST_ADMIN_PATH="+sock, "HERD_TEST_ADMIN_CHILD=1"))
	if err != nil {
		t.Fatal(err)
	}
	got = c.rec.waitFor(fmt.Sprintf("report %d ", w.ID()))
	want = fmt.Sprintf("report %d child call permission_denied: permission_denied: herd admin: process ", w.ID())
	if !strings.HasPrefix(got, want) || !strings.Contains(got, fmt.Sprintf("is worker %d of this primary, or a process it started", w.ID())) {
		t.Errorf("got %q\nwant %q...", got, want)
	}
}

// TestAdminSocketPath: a path held by a live primary's socket, or by a
// file that is not a socket, fails Start with a clear error and leaves
// the file alone; a stale socket (nothing listens) is replaced.
func TestAdminSocketPath(t *testing.T) {
	_, _, sock := adminPool(t, 1)
	dir := filepath.Dir(sock)
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	for path, want := range map[string]string{
		sock: "another process serves this socket",
		file: "exists and is not a socket",
	} {
		_, pl := newPool(t, "idle", runtime.WithPoolSize(1), runtime.WithAdminSocket(path))
		if err := pl.Start(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Start with the admin socket at %s: %v; want %q", filepath.Base(path), err, want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("the file in the way was touched: %q, %v", b, err)
	}
	_, pl := newPool(t, "idle", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline), runtime.WithAdminSocket(stale))
	startPool(t, pl)
	if _, err := dialAdmin(t, stale).Status(adminCtx(t), &herdv1.StatusRequest{}); err != nil {
		t.Errorf("status on the socket that replaced a stale one: %v", err)
	}
}
