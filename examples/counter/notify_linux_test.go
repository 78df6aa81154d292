//go:build linux

package main

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// TestNotifySocket runs the example as systemd runs a Type=notify service:
// the pool says READY=1 (with MAINPID and its STATUS= summary) once every
// worker is ready, after STATUS= updates alone, and STOPPING=1 when SIGTERM
// starts the graceful stop.
func TestNotifySocket(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// next returns the next notification that is not a STATUS= alone.
	next := func() string {
		t.Helper()
		for {
			conn.SetReadDeadline(time.Now().Add(herdtest.DefaultTimeout))
			buf := make([]byte, 4096)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no notification: %v", err)
			}
			if got := string(buf[:n]); !strings.HasPrefix(got, "STATUS=") {
				return got
			}
		}
	}
	herdtest.CheckLeaks(t)
	e := herdtest.Start(t, "counter", herdtest.WithArgs("-addr", "127.0.0.1:0", "-workers", "2"),
		herdtest.WithEnv(runtime.EnvNotifySocket+"="+name),
		herdtest.WithProcessGroup(), herdtest.WithWorkerPIDs(onlinePID))
	e.WaitLine("listening addr=")
	want := "READY=1\nMAINPID=" + strconv.Itoa(e.PID()) + "\nSTATUS=2/2 workers ready, 0 restarting\n"
	if got := next(); got != want {
		t.Errorf("first notification %q, want %q", got, want)
	}
	e.Signal(syscall.SIGTERM)
	if got := next(); got != "STOPPING=1\nSTATUS=stopping: 2/2 workers ready, 0 restarting\n" {
		t.Errorf("notification after SIGTERM %q, want STOPPING=1 with the status", got)
	}
	e.WaitLine("total=")
	e.WaitExit(0)
}
