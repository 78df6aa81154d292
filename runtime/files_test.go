//go:build linux || darwin

package runtime

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
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

// TestLostFilesRefuseTheMessage: a message whose descriptors this process
// could not install (it is at its RLIMIT_NOFILE: the kernel truncates the
// control message) is refused with resource_exhausted and an error event
// saying so, instead of running without them; the link stays up.
func TestLostFilesRefuseTheMessage(t *testing.T) {
	base := herdtest.Take()
	p := newRawPeer(t)
	p.echo(1, "before")
	var fds []int
	for range 3 {
		fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	frame := p.frame(wire.Header{Procedure: procEcho, CallID: 2, FDCount: 3}, marshal(t, &testv1.EchoRequest{Message: "x"}))

	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// A limit with one descriptor number free.
	open := map[int]bool{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list descriptors: %v", err)
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			open[n] = true
		}
	}
	limit, free := 0, 0
	// One free number, and the listing's own descriptor (closed now): two.
	for free < 1 || open[limit] {
		if !open[limit] {
			free++
		}
		limit++
	}
	lim := old
	lim.Cur = uint64(limit)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	werr := p.write(frame, fds)
	d := p.next()
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatalf("restoring RLIMIT_NOFILE: %v", err)
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	if d.replyTo != 2 || !d.hasError || d.code != CodeResourceExhausted || !strings.Contains(d.message, "lost") {
		t.Fatalf("reply %+v, want resource_exhausted saying the descriptors were lost", d)
	}
	if e := p.event(0); e.code != CodeResourceExhausted || e.procedure != procEcho || !strings.Contains(e.msg, "descriptor limit") {
		t.Errorf("error event %+v", e)
	}
	p.echo(3, "after")
	if err := p.ep.link.Err(); err != nil {
		t.Fatalf("link ended: %v", err)
	}
	p.close()
	herdtest.Check(t, base, dispatchWait)
}

// TestQueuedFilesBounded: the files waiting in a link's mailbox are bounded
// (WithMaxQueuedFiles): a message whose files would exceed the bound is
// refused with resource_exhausted and its files are closed at once, while
// the handler ahead of it still runs; the link goes on.
func TestQueuedFilesBounded(t *testing.T) {
	base := herdtest.Take()
	hold, held := make(chan struct{}), make(chan struct{})
	p := newRawPeerConfig(t, func(c *endpointConfig) { c.maxQueuedFDs = 4 },
		NewUnaryHandler("/herd.test.v1.TestService/Hold", func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
			close(held)
			<-hold
			return &testv1.EchoResponse{}, nil
		}))
	p.write(p.frame(wire.Header{Procedure: "/herd.test.v1.TestService/Hold", CallID: 1}, nil), nil)
	<-held
	send := func(id uint64) *os.File {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		fd := int(w.Fd())
		if err := p.write(p.frame(wire.Header{Procedure: procEcho, CallID: id, FDCount: 3}, marshal(t, &testv1.EchoRequest{Message: "f"})), []int{fd, fd, fd}); err != nil {
			t.Fatal(err)
		}
		w.Close()
		return r
	}
	r2 := send(2) // 3 queued: within the bound
	r3 := send(3) // 3 more: refused
	// Closed at once, though the drainer is still held.
	r3.SetReadDeadline(time.Now().Add(dispatchWait))
	if n, err := r3.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("refused message's files: read %d, %v; want EOF", n, err)
	}
	close(hold)
	for _, want := range []struct {
		id   uint64
		code Code
	}{{1, 0}, {2, 0}, {3, CodeResourceExhausted}} {
		d := p.next()
		if d.replyTo != want.id || Code(d.code) != want.code {
			t.Fatalf("reply %+v, want to %d with code %v", d, want.id, want.code)
		}
	}
	if e := p.event(0); e.code != CodeResourceExhausted || !strings.Contains(e.msg, "queued files") {
		t.Errorf("error event %+v", e)
	}
	if n := p.ep.queuedFDs.Load(); n != 0 {
		t.Errorf("%d files counted as queued after the handlers ran", n)
	}
	p.echo(4, "after")
	p.close()
	r2.Close()
	r3.Close()
	herdtest.Check(t, base, dispatchWait)
}
