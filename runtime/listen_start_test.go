//go:build unix

package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// listenBeforeStartMain is a worker that listens before Start, on a fixed
// port (HERD_TEST_ADDR), then starts and reports what Listen and
// ListenPacket said.
func listenBeforeStartMain() int {
	ctx := context.Background()
	addr := os.Getenv("HERD_TEST_ADDR")
	ln, lerr := runtime.Listen(ctx, "tcp", addr)
	if ln != nil {
		ln.Close()
	}
	pc, perr := runtime.ListenPacket(ctx, "udp", "127.0.0.1:0")
	if pc != nil {
		pc.Close()
	}
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		return 10
	}
	if err := self.Start(ctx); err != nil {
		return 12
	}
	// After Start, Listen goes through the primary.
	ln, err = runtime.Listen(ctx, "tcp", addr)
	if ln != nil {
		defer ln.Close()
	}
	var op *net.OpError
	msg := fmt.Sprintf("listen=%t packet=%t opError=%t after=%v",
		errors.Is(lerr, runtime.ErrNotStarted), errors.Is(perr, runtime.ErrNotStarted), errors.As(lerr, &op), err)
	if err := self.Call(ctx, testv1herd.TestServiceReportProcedure, &testv1.ReportRequest{Message: msg}, &testv1.ReportResponse{}); err != nil {
		return 13
	}
	<-self.Done()
	select {}
}

// TestListenBeforeStart: Listen in a worker before Self.Start is a mistake
// (it would bind a socket of the worker's own, and a fixed port then fails
// in the second worker with EADDRINUSE): it returns ErrNotStarted. Two
// workers do it on one fixed port, and both then share it after Start.
func TestListenBeforeStart(t *testing.T) {
	c := newCluster(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ws := []*runtime.Worker{
		c.fork("listen-before-start", runtime.WithForkEnv("HERD_TEST_ADDR="+addr)),
		c.fork("listen-before-start", runtime.WithForkEnv("HERD_TEST_ADDR="+addr)),
	}
	for _, w := range ws {
		got := c.rec.waitFor(fmt.Sprintf("report %d ", w.ID()))
		if want := fmt.Sprintf("report %d listen=true packet=true opError=true after=<nil>", w.ID()); got != want {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	}
}
