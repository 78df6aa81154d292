package runtime

import (
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestUntouchedConn: the kernel's word on an accepted connection is
// "untouched" only while nobody has read from it or written to it. Each
// case fails if untouchedConn looked at fewer of the kernel's counters.
func TestUntouchedConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name string
		sent string             // what the client writes first
		do   func(fd int) error // what the server does then
		half bool               // the client shuts down its side after sending
		want bool
	}{
		{name: "request unread", sent: req, want: true},
		{name: "nothing sent yet", want: true},
		{name: "request unread, client shut down its side", sent: req, half: true, want: true},
		{name: "request read, client shut down its side", sent: req, half: true, do: func(fd int) error { _, err := unix.Read(fd, make([]byte, 4096)); return err }},
		{name: "one byte read", sent: req, do: func(fd int) error { _, err := unix.Read(fd, make([]byte, 1)); return err }},
		{name: "request read", sent: req, do: func(fd int) error { _, err := unix.Read(fd, make([]byte, 4096)); return err }},
		{name: "answer written", sent: req, do: func(fd int) error { _, err := unix.Write(fd, []byte("HTTP/1.1 200 OK\r\n")); return err }},
		{name: "written before the client spoke", do: func(fd int) error { _, err := unix.Write(fd, []byte("220 hello\r\n")); return err }},
		{name: "shut down", sent: req, do: func(fd int) error { return unix.Shutdown(fd, unix.SHUT_WR) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var fd int
			rc, _ := s.(*net.TCPConn).SyscallConn()
			rc.Control(func(f uintptr) { fd = int(f) })
			if tc.sent != "" {
				if _, err := c.Write([]byte(tc.sent)); err != nil {
					t.Fatal(err)
				}
				waitReadable(t, fd)
			}
			if tc.half {
				if err := c.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				waitPoll(t, fd, unix.POLLRDHUP)
			}
			if tc.do != nil {
				if err := tc.do(fd); err != nil {
					t.Fatal(err)
				}
			}
			if got := untouchedConn(fd); got != tc.want {
				t.Fatalf("untouchedConn = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("unix", func(t *testing.T) {
		ul, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
		if err != nil {
			t.Fatal(err)
		}
		defer ul.Close()
		c, err := net.Dial("unix", ul.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ul.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rc, _ := s.(*net.UnixConn).SyscallConn()
		rc.Control(func(fd uintptr) {
			if untouchedConn(int(fd)) {
				t.Error("a unix connection counts as untouched: the kernel cannot tell")
			}
		})
	})
}

// waitReadable waits until fd has data to read.
func waitReadable(t *testing.T, fd int) {
	t.Helper()
	waitPoll(t, fd, unix.POLLIN)
}

// waitPoll waits until fd has one of events.
func waitPoll(t *testing.T, fd int, events int16) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		n, err := unix.Poll(fds, 100)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
	}
	t.Fatalf("no poll event %#x arrived", events)
}
