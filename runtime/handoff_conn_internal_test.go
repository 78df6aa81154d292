//go:build linux

package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	"golang.org/x/sys/unix"
)

// handoffPair returns a loopback TCP client and the server's end as a
// handoffConn over a descriptor made as a round-robin worker gets one: the
// accepted socket's only descriptor, non-blocking. laddr is what the
// worker passes as its listener's address (nil: ask the kernel).
func handoffPair(t testing.TB, laddr func(ln net.Listener) net.Addr) (client net.Conn, server *handoffConn) {
	t.Helper()
	client, tc, ln := tcpPair(t)
	fd := dupConnFD(t, tc)
	tc.Close() // the duplicate is now the socket's only descriptor
	var la net.Addr
	if laddr != nil {
		la = laddr(ln)
	}
	server = newHandoffConn(os.NewFile(uintptr(fd), "test-conn"), "tcp", la)
	if server == nil {
		t.Fatal("newHandoffConn refused a non-blocking socket")
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// tcpPair returns the two ends of a loopback TCP connection (the client's
// closed by the test's cleanup) and the closed listener that accepted it.
func tcpPair(t testing.TB) (client net.Conn, server *net.TCPConn, ln net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return client, c.(*net.TCPConn), ln
}

// dupConnFD duplicates c's descriptor; the duplicate shares its
// O_NONBLOCK status flag.
func dupConnFD(t testing.TB, c syscall.Conn) int {
	t.Helper()
	fd, err := dupConn(c)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestHandoffConnAddresses(t *testing.T) {
	base := herdtest.Take()
	t.Cleanup(func() { herdtest.Check(t, base, 10*time.Second) }) // after handoffPair's cleanups
	for _, tc := range []struct {
		name  string
		laddr func(net.Listener) net.Addr
	}{
		{"kernel", nil},
		{"listener", func(ln net.Listener) net.Addr { return ln.Addr() }},
		{"unspecified listener", func(ln net.Listener) net.Addr {
			return &net.TCPAddr{IP: net.IPv4zero, Port: ln.Addr().(*net.TCPAddr).Port}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := handoffPair(t, tc.laddr)
			la, ok := server.LocalAddr().(*net.TCPAddr)
			if !ok || la.String() != client.RemoteAddr().String() {
				t.Errorf("LocalAddr = %v, want %v", server.LocalAddr(), client.RemoteAddr())
			}
			ra, ok := server.RemoteAddr().(*net.TCPAddr)
			if !ok || ra.String() != client.LocalAddr().String() {
				t.Errorf("RemoteAddr = %v, want %v", server.RemoteAddr(), client.LocalAddr())
			}
		})
	}
}

func TestHandoffConnReadWriteAndDeadlines(t *testing.T) {
	base := herdtest.Take()
	t.Cleanup(func() { herdtest.Check(t, base, 10*time.Second) }) // after handoffPair's cleanups
	client, server := handoffPair(t, nil)
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if _, err := server.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}

	// A deadline in the past ends a read with a timeout, reported as
	// *net.TCPConn reports it (net/http tells an idle timeout by it).
	if err := server.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	_, err := server.Read(buf)
	var ne net.Error
	var oe *net.OpError
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "read" || oe.Net != "tcp" {
		t.Fatalf("read past the deadline: %#v, want a read *net.OpError timing out", err)
	}
	// A deadline cleared lets the read wait for data again; one set while
	// a read waits ends it.
	if err := server.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := server.Read(buf)
		done <- err
	}()
	if err := server.SetDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waiting read after SetDeadline: %v", err)
	}
	if err := server.SetWriteDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the deadline: %v", err)
	}
}

func TestHandoffConnCloseWrite(t *testing.T) {
	base := herdtest.Take()
	t.Cleanup(func() { herdtest.Check(t, base, 10*time.Second) }) // after handoffPair's cleanups
	client, server := handoffPair(t, nil)
	var cw interface{ CloseWrite() error } = server // net/http's closeWriter
	if _, err := server.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "bye" {
		t.Fatalf("client read %q, %v; want bye then EOF", got, err)
	}
	// The reading side stays open.
	if _, err := client.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "late" {
		t.Fatalf("server read %q, %v after CloseWrite", buf, err)
	}
}

// TestHandoffConnCloseSendsFINWithCopyHeld: the primary may still hold
// its copy of the descriptor when the worker's server closes the
// connection; the client must see the end at once, not when the primary
// closes its copy.
func TestHandoffConnCloseSendsFINWithCopyHeld(t *testing.T) {
	base := herdtest.Take()
	t.Cleanup(func() { herdtest.Check(t, base, 10*time.Second) }) // after handoffPair's cleanups
	client, server := handoffPair(t, nil)
	held := dupConnFD(t, server) // the primary's copy
	defer closeFD(held)
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	n, err := client.Read(make([]byte, 1))
	if n != 0 || err != io.EOF {
		t.Fatalf("client read %d, %v with the copy held; want EOF", n, err)
	}
}

func TestHandoffConnCloseOnce(t *testing.T) {
	base := herdtest.Take()
	t.Cleanup(func() { herdtest.Check(t, base, 10*time.Second) }) // after handoffPair's cleanups
	_, server := handoffPair(t, nil)
	lim := newConnLimit(1)
	if !lim.acquire() {
		t.Fatal("limit full")
	}
	server.rel = &releaser{l: lim}
	reading := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 1))
		reading <- err
	}()
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-reading; !errors.Is(err, net.ErrClosed) {
		t.Errorf("read waiting during Close: %v, want net.ErrClosed", err)
	}
	if err := server.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
	if n := lim.open.Load(); n != 0 {
		t.Errorf("limit counts %d open connections after two Closes, want 0", n)
	}
}

// TestHandoffConnBlockingFallsBack: a blocking descriptor (from a primary
// that does not accept non-blocking ones) is refused, and left open for
// net.FileConn.
func TestHandoffConnBlockingFallsBack(t *testing.T) {
	base := herdtest.Take()
	t.Cleanup(func() { herdtest.Check(t, base, 10*time.Second) }) // after handoffPair's cleanups
	client, server := handoffPair(t, nil)
	fd := dupConnFD(t, server)
	server.discard() // no shutdown: the connection lives on in fd
	if err := unix.SetNonblock(fd, false); err != nil {
		closeFD(fd)
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "blocking")
	defer f.Close()
	if c := newHandoffConn(f, "tcp", nil); c != nil {
		t.Fatal("newHandoffConn took a blocking descriptor")
	}
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatalf("the refused file: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

// TestHandoffConnReadFromFile: a regular file is sent with sendfile, from
// its offset and within a LimitedReader's bound; other readers are copied.
func TestHandoffConnReadFromFile(t *testing.T) {
	base := herdtest.Take()
	t.Cleanup(func() { herdtest.Check(t, base, 10*time.Second) }) // after handoffPair's cleanups
	client, server := handoffPair(t, nil)
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: more than the socket takes at once
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(10, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	want := data[10 : len(data)-100]
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(client, int64(len(want)+3)))
		got <- b
	}()
	lr := &io.LimitedReader{R: f, N: int64(len(want))}
	n, handled, err := server.sendFile(lr)
	if !handled || err != nil || n != int64(len(want)) || lr.N != 0 {
		t.Fatalf("sendFile = %d, %v, %v (N left %d); want %d handled", n, handled, err, lr.N, len(want))
	}
	if off, _ := f.Seek(0, io.SeekCurrent); off != int64(10+len(want)) {
		t.Errorf("file offset %d after sendfile, want %d", off, 10+len(want))
	}
	if n, err := server.ReadFrom(bytes.NewReader([]byte("end"))); n != 3 || err != nil {
		t.Fatalf("ReadFrom(bytes.Reader) = %d, %v", n, err)
	}
	b := <-got
	if !bytes.Equal(b, append(append([]byte(nil), want...), "end"...)) {
		t.Fatalf("client got %d bytes, want %d", len(b), len(want)+3)
	}
}

// TestHandoffConnServesHTTP: net/http serves a handoffConn, keep-alive and
// a file response (its ReadFrom path), and ends it on a header timeout
// without answering: net/http tells the timeout by the error's type, and
// answers "400 Bad Request" to a read error it does not know.
func TestHandoffConnServesHTTP(t *testing.T) {
	base := herdtest.Take()
	t.Cleanup(func() { herdtest.Check(t, base, 10*time.Second) }) // after handoffPair's cleanups
	client, server := handoffPair(t, func(ln net.Listener) net.Addr { return ln.Addr() })
	body := bytes.Repeat([]byte("herd "), 4000)
	path := filepath.Join(t.TempDir(), "page.txt")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	remote := make(chan string, 2)
	srv := &http.Server{
		IdleTimeout: time.Minute,
		// From the request's first bytes (a whole request arrives in one
		// segment and is read at once).
		ReadHeaderTimeout: 50 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			remote <- r.RemoteAddr
			http.ServeFile(w, r, path)
		}),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(&oneConnListener{c: server, done: make(chan struct{})}) }()
	defer func() {
		srv.Close()
		<-served
	}()
	br := bufio.NewReader(client)
	for i := range 2 {
		if _, err := io.WriteString(client, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("request %d: %d bytes, %v; want %d", i, len(got), err, len(body))
		}
		if r := <-remote; r != client.LocalAddr().String() {
			t.Errorf("RemoteAddr %q, want %q", r, client.LocalAddr())
		}
	}
	// Half a request, then the header timeout: closed without a "400 Bad
	// Request".
	if _, err := io.WriteString(client, "GET / HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the header timeout the client read %q, %v; want a bare EOF (a timeout)", rest, err)
	}
}

// oneConnListener returns one connection, then waits until closed.
type oneConnListener struct {
	c    net.Conn
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if c := l.c; c != nil {
		l.c = nil
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// BenchmarkHandoffConnReadPastDeadline: net/http ends the background read
// of every keep-alive request with a deadline in the past; a handoffConn's
// read that times out costs what a *net.TCPConn's does (one *net.OpError).
func BenchmarkHandoffConnReadPastDeadline(b *testing.B) {
	for _, bc := range []struct {
		name string
		conn func() net.Conn
	}{
		{"handoffConn", func() net.Conn { _, s := handoffPair(b, nil); return s }},
		{"TCPConn", func() net.Conn {
			_, s, _ := tcpPair(b)
			b.Cleanup(func() { s.Close() })
			return s
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := bc.conn()
			if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
					b.Fatal(err)
				}
			}
		})
	}
}
