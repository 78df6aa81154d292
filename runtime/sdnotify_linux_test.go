//go:build linux

package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime"
)

// notifySocket is a datagram socket standing in for systemd's: it is bound
// to name (a path, or an abstract name with a leading '@') and NOTIFY_SOCKET
// names it for the test.
type notifySocket struct {
	t    *testing.T
	conn *net.UnixConn
}

func newNotifySocket(t *testing.T, name string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv(runtime.EnvNotifySocket, name)
	return &notifySocket{t: t, conn: conn}
}

// next returns the next datagram's text.
func (s *notifySocket) next() string {
	s.t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(waitLimit))
	buf := make([]byte, 4096)
	n, err := s.conn.Read(buf)
	if err != nil {
		s.t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func monotonicNow(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}

func testNotifyMessages(t *testing.T, name string) {
	s := newNotifySocket(t, name)
	n := runtime.NewNotifier(nil)
	if !n.Enabled() {
		t.Fatal("Notifier not enabled with NOTIFY_SOCKET set")
	}
	if err := n.Ready("serving 4 workers\nand more"); err != nil {
		t.Fatal(err)
	}
	if got, want := s.next(), "READY=1\nSTATUS=serving 4 workers and more\n"; got != want {
		t.Errorf("Ready sent %q, want %q", got, want)
	}
	before := monotonicNow(t)
	if err := n.Reloading(""); err != nil {
		t.Fatal(err)
	}
	after := monotonicNow(t)
	got := s.next()
	rest, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
	us, err := strconv.ParseUint(strings.TrimSuffix(rest, "\n"), 10, 64)
	if !ok || err != nil || !strings.HasSuffix(rest, "\n") || us < before || us > after {
		t.Errorf("Reloading sent %q, want RELOADING=1 and MONOTONIC_USEC in [%d, %d]", got, before, after)
	}
	if err := n.Stopping(""); err != nil {
		t.Fatal(err)
	}
	if got := s.next(); got != "STOPPING=1\n" {
		t.Errorf("Stopping sent %q", got)
	}
	if err := runtime.Notify(runtime.NotifyWatchdog, runtime.NotifyMainPID(42), runtime.NotifyStatus("ok")); err != nil {
		t.Fatal(err)
	}
	if got := s.next(); got != "WATCHDOG=1\nMAINPID=42\nSTATUS=ok\n" {
		t.Errorf("Notify sent %q", got)
	}
}

func TestNotifyPathSocket(t *testing.T) {
	testNotifyMessages(t, filepath.Join(t.TempDir(), "notify"))
}

func TestNotifyAbstractSocket(t *testing.T) {
	testNotifyMessages(t, fmt.Sprintf("@herd-test-notify-%d-%d", os.Getpid(), time.Now().UnixNano()))
}

func TestNotifyAbsentOrUnreachableIsHarmless(t *testing.T) {
	os.Unsetenv(runtime.EnvNotifySocket)
	t.Setenv(runtime.EnvNotifySocket, "")
	var h logRecords
	n := runtime.NewNotifier(slog.New(&h))
	if n.Enabled() {
		t.Error("enabled without NOTIFY_SOCKET")
	}
	if err := n.Ready("x"); err != nil {
		t.Errorf("Ready without a socket: %v", err)
	}
	if recs := h.all(); len(recs) != 0 {
		t.Errorf("records without a socket: %q", recs)
	}

	t.Setenv(runtime.EnvNotifySocket, filepath.Join(t.TempDir(), "nobody-listens"))
	n = runtime.NewNotifier(slog.New(&h))
	if err := n.Ready(""); err != nil {
		t.Errorf("Ready to a missing socket: %v", err)
	}
	recs := h.all()
	if len(recs) != 1 || !strings.HasPrefix(recs[0], "DEBUG herd: sd_notify not delivered") {
		t.Errorf("records for a missing socket: %q, want one debug record", recs)
	}
}

func TestNotifyMalformedState(t *testing.T) {
	s := newNotifySocket(t, filepath.Join(t.TempDir(), "notify"))
	n := runtime.NewNotifier(nil)
	for _, bad := range []string{"READY", "=1", "READY=1\nMAINPID=1", "STATUS=a\x00b"} {
		if err := n.Notify(runtime.NotifyStopping, bad); !errors.Is(err, runtime.ErrNotifyState) {
			t.Errorf("Notify(%q) = %v, want ErrNotifyState", bad, err)
		}
	}
	// Nothing was sent for the bad states: the next datagram is this one.
	if err := n.Notify(runtime.NotifyReady); err != nil {
		t.Fatal(err)
	}
	if got := s.next(); got != "READY=1\n" {
		t.Errorf("got %q, want READY=1 (a malformed call sent something)", got)
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string // "-" leaves the variable unset
		want      time.Duration
		ok, warn  bool
	}{
		{"-", "-", 0, false, false},
		{"30000000", "-", 30 * time.Second, true, false},
		{"30000000", pid, 30 * time.Second, true, false},
		{"30000000", "1", 0, false, false}, // another process's watchdog
		{"", "-", 0, false, true},
		{"abc", "-", 0, false, true},
		{"-5", "-", 0, false, true},
		{"0", "-", 0, false, true},
		{"99999999999999999999", "-", 0, false, true},
		{"30000000", "me", 0, false, true},
	} {
		for k, v := range map[string]string{runtime.EnvWatchdogUSec: tc.usec, runtime.EnvWatchdogPID: tc.pid} {
			if v == "-" {
				t.Setenv(k, "")
				os.Unsetenv(k)
			} else {
				t.Setenv(k, v)
			}
		}
		var h logRecords
		d, ok := runtime.WatchdogInterval(slog.New(&h))
		recs := h.all()
		warned := len(recs) == 1 && strings.HasPrefix(recs[0], "WARN herd: WATCHDOG_")
		if d != tc.want || ok != tc.ok || warned != tc.warn || (!tc.warn && len(recs) != 0) {
			t.Errorf("USEC=%q PID=%q: %v %v, records %q; want %v %v warn=%v", tc.usec, tc.pid, d, ok, recs, tc.want, tc.ok, tc.warn)
		}
	}
}

// TestWatchdogPingsOnlyWhileHealthy checks the pinger by counting, not by
// timing: the health function is healthy on its calls 1, 2 and 5 and not on
// 3 and 4, so exactly three pings come, and the third comes after the fifth
// call.
func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	s := newNotifySocket(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv(runtime.EnvWatchdogUSec, "2000") // a ping every millisecond
	t.Setenv(runtime.EnvWatchdogPID, strconv.Itoa(os.Getpid()))
	var calls atomic.Int64
	healthy := func() bool {
		switch calls.Add(1) {
		case 1, 2, 5:
			return true
		}
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runtime.NewNotifier(nil).RunWatchdog(ctx, healthy) }()
	for i := 1; i <= 3; i++ {
		if got := s.next(); got != "WATCHDOG=1\n" {
			t.Fatalf("ping %d: %q", i, got)
		}
		if i == 3 {
			if c := calls.Load(); c < 5 {
				t.Errorf("third ping after %d health calls: a ping was sent while unhealthy", c)
			}
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("RunWatchdog = %v, want context.Canceled", err)
	}
	// Every later call was unhealthy: nothing more is queued after the
	// third ping.
	s.conn.SetReadDeadline(time.Now())
	if n, err := s.conn.Read(make([]byte, 64)); err == nil {
		t.Errorf("a ping after the unhealthy calls (%d bytes)", n)
	}
}

func TestWatchdogDisabledReturnsAtOnce(t *testing.T) {
	t.Setenv(runtime.EnvWatchdogUSec, "")
	os.Unsetenv(runtime.EnvWatchdogUSec)
	if err := runtime.NewNotifier(nil).RunWatchdog(context.Background(), nil); err != nil {
		t.Errorf("RunWatchdog without a watchdog = %v", err)
	}
}

// TestPrimaryDisconnectNotifiesStopping checks that a primary's graceful stop
// sends STOPPING=1, and that its workers do not inherit NOTIFY_SOCKET or the
// watchdog settings.
func TestPrimaryDisconnectNotifiesStopping(t *testing.T) {
	s := newNotifySocket(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv(runtime.EnvWatchdogUSec, "1000000")
	c := newCluster(t, runtime.WithExec("/usr/bin/env"), runtime.WithSilent(true))
	w, err := c.p.Fork(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(w.Stdout())
	if err != nil {
		t.Fatal(err)
	}
	c.waitExit(w)
	if !strings.Contains(string(out), "HERD_WORKER_ID=") {
		t.Fatalf("worker environment not read: %q", out)
	}
	for _, k := range []string{runtime.EnvNotifySocket, runtime.EnvWatchdogUSec} {
		if strings.Contains(string(out), k+"=") {
			t.Errorf("worker inherited %s", k)
		}
	}
	if err := c.p.Disconnect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.next(); got != "STOPPING=1\n" {
		t.Errorf("Disconnect sent %q, want STOPPING=1", got)
	}
}
