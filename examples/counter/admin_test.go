//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// herdctl builds cmd/herdctl into dir, as `go install` would.
func buildHerdctl(t *testing.T, dir string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH: cannot build herdctl")
	}
	bin := filepath.Join(dir, "herdctl")
	out, err := exec.Command(gobin, "build", "-o", bin, "github.com/herd-go/herd/cmd/herdctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build herdctl: %v\n%s", err, out)
	}
	return bin
}

// TestHerdctl operates the example with herdctl, as the README shows:
// HERD_ADMIN_SOCKET makes it serve its admin socket; status -json lists
// the workers, reload replaces them (the example prints its reloaded line
// for it too), scale adds one.
func TestHerdctl(t *testing.T) {
	dir := t.TempDir()
	bin := buildHerdctl(t, dir)
	sock := filepath.Join(dir, "admin.sock")
	t.Setenv(runtime.EnvAdminSocket, sock) // for the example, and for herdctl without -socket
	herdtest.CheckLeaks(t)
	e := start(t, "-addr", "127.0.0.1:0", "-workers", "2")
	e.WaitLine("listening addr=")
	herdctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("herdctl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return string(out)
	}

	var st struct {
		Workers []struct {
			ID       uint64 `json:"id"`
			PID      int    `json:"pid"`
			State    string `json:"state"`
			Ready    bool   `json:"ready"`
			Restarts int    `json:"restarts"`
		} `json:"workers"`
	}
	if err := json.Unmarshal([]byte(herdctl("-socket", sock, "status", "-json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Workers) != 2 {
		t.Fatalf("status -json: %+v", st)
	}
	online := make(map[uint64]int) // worker ID -> PID, from the online lines (in any order)
	for _, l := range e.Lines() {
		var id uint64
		var pid int
		if n, _ := fmt.Sscanf(l, "online worker=%d pid=%d", &id, &pid); n == 2 {
			online[id] = pid
		}
	}
	for i, w := range st.Workers {
		if w.ID != uint64(i+1) || w.PID != online[w.ID] || w.State != "listening" || !w.Ready || w.Restarts != 0 {
			t.Errorf("worker %d: %+v (online lines %v)", i, w, online)
		}
	}

	// The socket from HERD_ADMIN_SOCKET, as a user who exported it types.
	out := herdctl("reload")
	if !strings.HasSuffix(out, "reloaded workers=3,4\n") {
		t.Errorf("herdctl reload printed %q", out)
	}
	e.WaitLine("reloaded workers=3,4")

	if out := herdctl("scale", "3"); out != "scaled from 2 to 3 workers\n" {
		t.Errorf("herdctl scale 3 printed %q", out)
	}
	e.WaitLine("online worker=5")
	// Online is not listening yet: the status lists worker 5 as listening
	// once its server has started, which no line of the example announces.
	var status string
	listed := false
	defer func() { // WaitUntil failed: show the last status
		if !listed {
			t.Logf("status after scale 3:\n%s", status)
		}
	}()
	herdtest.WaitUntil(t, "herdctl status lists 3 listening workers after scale 3", func() bool {
		status = herdctl("status")
		return strings.Count(status, "listening") == 3
	})
	listed = true

	e.Signal(syscall.SIGTERM)
	e.WaitLine("total=")
	e.WaitExit(0)
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("the admin socket %s is still there after the primary exited", sock)
	}
	cmd := exec.Command(bin, "status")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), fmt.Sprintf("no admin socket at %s", sock)) {
		t.Errorf("herdctl status once the primary is gone: %v %q", err, stderr.String())
	}
}
