//go:build linux || darwin

package runtime

import (
	"context"
	"os"
	"testing"
	"time"

	testv1 "github.com/herd-go/herd/gen/herd/test/v1"
	"github.com/herd-go/herd/runtime/herdtest"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestFilesClosedWhenHandlerReturns: the files attached to a call are
// closed as soon as a handler that did not take them returns (not by the
// garbage collector: the test keeps them reachable), and stay open, the
// handler's, when it took them with TakeFiles.
func TestFilesClosedWhenHandlerReturns(t *testing.T) {
	base := herdtest.Take()
	seen := make(chan []*os.File, 2)
	p := newRawPeer(t,
		NewUnaryHandler("/herd.test.v1.TestService/Keep", func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
			seen <- FilesFromContext(ctx) // looks, does not take
			return &testv1.EchoResponse{}, nil
		}),
		NewUnaryHandler("/herd.test.v1.TestService/Take", func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
			files := TakeFiles(ctx)
			if again := FilesFromContext(ctx); len(again) != len(files) {
				t.Errorf("FilesFromContext after TakeFiles: %d files, want %d", len(again), len(files))
			}
			seen <- files
			return &testv1.EchoResponse{}, nil
		}),
	)
	for i, proc := range []string{"/herd.test.v1.TestService/Keep", "/herd.test.v1.TestService/Take"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		id := uint64(i + 1)
		if err := p.write(p.frame(wire.Header{Procedure: proc, CallID: id, FDCount: 1}, nil), []int{int(w.Fd())}); err != nil {
			t.Fatal(err)
		}
		w.Close()
		files := <-seen
		if d := p.next(); d.replyTo != id || d.hasError {
			t.Fatalf("reply %+v", d)
		}
		if len(files) != 1 {
			t.Fatalf("%s: %d files", proc, len(files))
		}
		r.SetReadDeadline(time.Now().Add(dispatchWait))
		buf := make([]byte, 1)
		if i == 0 {
			// The reply is written after the handler returned: by now the
			// file not taken is closed, and the pipe reads EOF.
			if n, err := r.Read(buf); n != 0 || err == nil {
				t.Fatalf("%s: read %d, %v; want EOF (the file was not closed)", proc, n, err)
			}
		} else {
			if _, err := files[0].Write([]byte("x")); err != nil {
				t.Fatalf("%s: the taken file: %v", proc, err)
			}
			if n, err := r.Read(buf); n != 1 || err != nil {
				t.Fatalf("%s: read %d, %v", proc, n, err)
			}
			files[0].Close()
		}
		r.Close()
		_ = files // reachable until here: no finalizer closed them
	}
	p.close()
	herdtest.Check(t, base, dispatchWait)
}
