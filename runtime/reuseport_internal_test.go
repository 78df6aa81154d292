//go:build linux

package runtime

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
)

// TestTrustReturned: the primary takes back from a worker only the
// connections it offered that worker; anything else is closed.
func TestTrustReturned(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	files := make([]*os.File, 3)
	for i := range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if files[i], err = s.(*net.TCPConn).File(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	r, w, err := os.Pipe() // not a socket at all
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	files[2] = w
	c0, ok := socketCookie(files[0])
	if !ok {
		t.Fatal("no cookie for a TCP socket")
	}
	if c1, _ := socketCookie(files[1]); c1 == c0 {
		t.Fatal("two sockets share a cookie")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rm := &reuseMember{}
	rm.offered.add(c0)
	keep := rm.trustReturned(files, log)
	if len(keep) != 1 {
		t.Fatalf("kept %v, want the offered connection alone", keep)
	}
	if c, _ := socketCookie(keep[0]); c != c0 {
		t.Errorf("kept socket %d, want %d", c, c0)
	}
	keep[0].Close()
	// Every returned file is closed (the kept one is a duplicate).
	for _, f := range files {
		if err := f.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("%s was not closed (Close: %v)", f.Name(), err)
		}
	}
	// A member that already left takes nothing back.
	s, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	var gone *reuseMember
	if keep := gone.trustReturned([]*os.File{s}, log); len(keep) != 0 {
		t.Errorf("a departed member kept %v", keep)
	}
	if err := s.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("not closed for a departed member (Close: %v)", err)
	}
}

// TestCookieRing: the ring remembers the last maxAdoptQueue cookies.
func TestCookieRing(t *testing.T) {
	var r cookieRing
	for c := uint64(1); c <= maxAdoptQueue+1; c++ {
		r.add(c)
	}
	if r.has(1) {
		t.Error("the oldest cookie is still remembered")
	}
	for _, c := range []uint64{2, maxAdoptQueue, maxAdoptQueue + 1} {
		if !r.has(c) {
			t.Errorf("cookie %d forgotten", c)
		}
	}
}
