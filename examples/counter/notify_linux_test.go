//go:build linux

package main

import (
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
)

// TestNotifySocket runs the example as systemd runs a Type=notify service:
// READY=1 comes once every worker listens, STOPPING=1 when SIGTERM starts
// the graceful stop.
func TestNotifySocket(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv(runtime.EnvNotifySocket, name)
	next := func() string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(waitLimit))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	e := start(t, "-addr", "127.0.0.1:0", "-workers", "2")
	e.expect("listening addr=")
	if got := next(); got != "READY=1\n" {
		t.Errorf("first notification %q, want READY=1", got)
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	if got := next(); got != "STOPPING=1\n" {
		t.Errorf("notification after SIGTERM %q, want STOPPING=1", got)
	}
	e.expect("total=")
	if err := e.cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}
