//go:build linux

package runtime_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// poolReloadPrimary runs a pool of one idle worker of this program, prints
// "ready", reloads once per line read on stdin and prints the result on
// one line, and stops at EOF.
func poolReloadPrimary() int {
	ctx := context.Background()
	p := runtime.NewPrimary(herdtest.WorkerRole("idle"))
	ready := make(chan struct{}, 4)
	if err := p.Register(runtime.NewUnaryHandler("/herd.v1.EventService/Ready", func(ctx context.Context, ev *herdv1.ReadyEvent) (*emptypb.Empty, error) {
		ready <- struct{}{}
		return &emptypb.Empty{}, nil
	})); err != nil {
		return 2
	}
	pl := runtime.NewPool(p, runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline))
	if err := pl.Start(ctx); err != nil {
		fmt.Println("start:", err)
		return 3
	}
	<-ready
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Printf("reload: %q\n", fmt.Sprint(pl.Reload(ctx)))
	}
	if err := pl.Stop(ctx); err != nil {
		fmt.Println("stop:", err)
		return 4
	}
	return 0
}

// TestPoolReloadExecsProgramOnDisk: a reload's replacement runs the
// program as it is on disk now, not the one the primary started from: the
// primary's executable is replaced (renamed over, as an install does) by a
// program that fails at once, and the reload reports that program's exit
// and stderr; the old worker keeps running and stops cleanly.
func TestPoolReloadExecsProgramOnDisk(t *testing.T) {
	base := herdtest.Take()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prog)
	cmd.Env = append(os.Environ(), herdtest.EnvRole+"=poolreload-primary")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		t.Helper()
		select {
		case l := <-lines:
			return l
		case <-time.After(waitLimit):
			cmd.Process.Kill()
			t.Fatal("no output from the primary")
			return ""
		}
	}
	if l := next(); l != "ready" {
		t.Fatalf("primary said %q", l)
	}
	// Install a "new version" over the program.
	script := "#!/bin/sh\necho 'new version on disk' >&2\nexit 7\n"
	if err := os.WriteFile(prog+".new", []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(prog+".new", prog); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin)
	l := next()
	if !strings.Contains(l, "reload aborted at slot 0 (replacement worker 2)") || !strings.Contains(l, "exited with code 7") ||
		!strings.Contains(l, "new version on disk") {
		t.Errorf("reload: %s", l)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("primary: %v", err)
	}
	herdtest.Check(t, base, 10*time.Second)
}
