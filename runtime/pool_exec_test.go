//go:build linux

package runtime_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	herdtest.CheckLeaks(t)
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
	p := herdtest.Start(t, "poolreload-primary", herdtest.WithProgram(prog))
	if l := p.WaitLine(""); l != "ready" {
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
	p.Send("")
	l := p.WaitLine("")
	if !strings.Contains(l, "reload aborted at slot 0 (replacement worker 2)") || !strings.Contains(l, "exited with code 7") ||
		!strings.Contains(l, "new version on disk") {
		t.Errorf("reload: %s", l)
	}
	p.CloseStdin()
	p.WaitExit(0)
}
