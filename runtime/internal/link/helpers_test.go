//go:build linux || darwin

package link

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// testTimeout bounds every wait in the tests, so that a bug fails a test
// instead of hanging the run.
const testTimeout = 30 * time.Second

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	dir := "/proc/self/fd"
	if goruntime.GOOS == "darwin" {
		dir = "/dev/fd"
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("counting descriptors: %v", err)
	}
	return len(ents)
}

// checkLeaks records the open descriptors and goroutines now and, when the
// test ends (after its other cleanups, which close its links), fails it if
// either count grew. Call it first in a test.
func checkLeaks(t testing.TB) {
	t.Helper()
	fds, gs := openFDs(t), goruntime.NumGoroutine()
	t.Cleanup(func() {
		// Goroutines of ended links return just after closing Done.
		deadline := time.Now().Add(testTimeout)
		for goruntime.NumGoroutine() > gs && time.Now().Before(deadline) {
			goruntime.Gosched()
		}
		if n := goruntime.NumGoroutine(); n > gs {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutine leak: %d before, %d after\n%s", gs, n, buf[:goruntime.Stack(buf, true)])
		}
		if n := openFDs(t); n != fds {
			t.Errorf("descriptor leak: %d open before, %d after", fds, n)
		}
	})
}

// waitDone waits for l to end.
func waitDone(t testing.TB, l *Link) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(testTimeout):
		t.Fatalf("link did not end; Err() = %v", l.Err())
	}
}

// startLink starts a link on f and closes it at the end of the test.
func startLink(t testing.TB, f *os.File, h Handler, opts ...Option) *Link {
	t.Helper()
	l, err := New(f, h, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		l.Close()
		waitDone(t, l)
	})
	return l
}

// linkPair returns two links connected to each other.
func linkPair(t testing.TB, ha, hb Handler, opts ...Option) (a, b *Link) {
	t.Helper()
	fa, fb, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	return startLink(t, fa, ha, opts...), startLink(t, fb, hb, opts...)
}

// rawPair returns a link and the raw other end of its socket, as a blocking
// descriptor the test writes to directly.
func rawPair(t testing.TB, h Handler, opts ...Option) (*Link, int) {
	t.Helper()
	fa, fb, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := unix.Dup(int(fb.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	fb.Close()
	var once sync.Once
	closeRaw := func() { once.Do(func() { unix.Close(raw) }) }
	t.Cleanup(closeRaw)
	l := startLink(t, fa, h, opts...)
	return l, raw
}

// received is a frame as the handler saw it, copied.
type received struct {
	hdr     wire.Header
	payload []byte
	files   []*os.File
}

// collector is a handler that keeps every frame, and can hold the reader:
// when gated, each frame waits for a token from gate (or for the gate to be
// closed) before the handler returns.
type collector struct {
	mu     sync.Mutex
	frames []received
	notify chan struct{} // gets a token per frame
	gate   chan struct{} // nil: never block
}

func newCollector(gated bool) *collector {
	c := &collector{notify: make(chan struct{}, 1<<16)}
	if gated {
		c.gate = make(chan struct{})
	}
	return c
}

func (c *collector) handle(env *wire.Envelope, files []*os.File) error {
	r := received{
		hdr: wire.Header{
			Procedure: string(env.Procedure), CallID: env.CallID, ReplyTo: env.ReplyTo, Flags: env.Flags,
			FDCount: env.FDCount, ErrorCode: env.ErrorCode, ErrorMessage: string(env.ErrorMessage),
			DeadlineUnixNano: env.DeadlineUnixNano,
		},
		payload: bytes.Clone(env.Payload),
		files:   append([]*os.File(nil), files...),
	}
	c.mu.Lock()
	c.frames = append(c.frames, r)
	c.mu.Unlock()
	c.notify <- struct{}{}
	if c.gate != nil {
		<-c.gate
	}
	return nil
}

// wait waits until n frames have arrived in total.
func (c *collector) wait(t testing.TB, n int) []received {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		c.mu.Lock()
		got := len(c.frames)
		c.mu.Unlock()
		if got >= n {
			c.mu.Lock()
			defer c.mu.Unlock()
			return append([]received(nil), c.frames...)
		}
		select {
		case <-c.notify:
		case <-timeout:
			t.Fatalf("received %d frames, waiting for %d", got, n)
		}
	}
}

// closeFiles closes the descriptors the collector received, at the end of
// the test.
func (c *collector) closeFiles() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.frames {
		for _, f := range r.files {
			f.Close()
		}
	}
}

func discard(*wire.Envelope, []*os.File) error { return nil }

// frameBytes encodes one frame.
func frameBytes(t testing.TB, h wire.Header, payload proto.Message) []byte {
	t.Helper()
	b, err := wire.AppendFrame(nil, &h, payload, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawWrite writes b to the blocking descriptor fd.
func rawWrite(t testing.TB, fd int, b []byte) {
	t.Helper()
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("raw write: %v", err)
		}
		b = b[n:]
	}
}

// rawSendFDs writes b with sendmsg, fds attached.
func rawSendFDs(t testing.TB, fd int, b []byte, fds ...int) {
	t.Helper()
	n, err := unix.SendmsgN(fd, b, unix.UnixRights(fds...), nil, 0)
	if err != nil {
		t.Fatalf("raw sendmsg: %v", err)
	}
	rawWrite(t, fd, b[n:])
}

// pipe returns a pipe closed at the end of the test.
func pipe(t testing.TB) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// expectEOF checks that r reads end-of-file: every write end of its pipe is
// closed.
func expectEOF(t testing.TB, r *os.File) {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(testTimeout))
	n, err := r.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read from pipe = %d, %v; want EOF (a received write end is still open)", n, err)
	}
}

// be32 is a length prefix.
func be32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// poll waits until cond holds, spinning the scheduler; for states the tests
// cannot be told about through a channel.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		goruntime.Gosched()
	}
}

// holdWriter returns an option whose writer stops before its first batch
// until release is closed, and the channel closed once it has stopped.
func holdWriter() (opt Option, entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var batches atomic.Int32
	opt = optionFunc(func(c *config) {
		c.beforeBatch = func() {
			if batches.Add(1) == 1 {
				close(entered)
				<-release
			}
		}
	})
	return opt, entered, release
}
