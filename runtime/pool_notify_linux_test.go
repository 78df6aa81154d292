//go:build linux

package runtime_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-go/herd/runtime"
)

// TestPoolReloadNotifiesSystemd: a reload tells systemd RELOADING=1 (with
// MONOTONIC_USEC) when it starts and READY=1 when it has ended, as
// Type=notify-reload expects.
func TestPoolReloadNotifiesSystemd(t *testing.T) {
	sock := newNotifySocket(t, filepath.Join(t.TempDir(), "notify"))
	c, pl := newPool(t, "idle", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	if err := pl.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sock.next(); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("first notification %q, want RELOADING=1 with MONOTONIC_USEC", got)
	}
	if got := strings.TrimSpace(sock.next()); got != "READY=1" {
		t.Errorf("second notification %q, want READY=1", got)
	}
}
