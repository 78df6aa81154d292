//go:build linux || darwin

package link

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// A link WithoutFDs refuses descriptors both ways: a peer's end the link
// with ErrFDsRefused and are closed (the pipe's write end sent reads EOF
// once the link is gone), and Send with descriptors fails without harm.
func TestWithoutFDsRefusesDescriptors(t *testing.T) {
	checkLeaks(t)
	c := newCollector(false)
	l, raw := rawPair(t, c.handle, WithoutFDs())
	r, w := pipe(t)
	rawSendFDs(t, raw, frameBytes(t, wire.Header{Procedure: "/p/M", FDCount: 1}, nil), int(w.Fd()))
	w.Close()
	waitDone(t, l)
	var pe *wire.ProtocolError
	if err := l.Err(); !errors.Is(err, ErrFDsRefused) || !errors.As(err, &pe) {
		t.Fatalf("Err() = %v; want a *wire.ProtocolError wrapping ErrFDsRefused", err)
	}
	expectEOF(t, r)
	if n := len(c.frames); n != 0 {
		t.Fatalf("handler saw %d frames; want none", n)
	}

	a, b := linkPair(t, discard, discard, WithoutFDs())
	_ = b
	for name, send := range map[string]func() error{
		"Send":         func() error { return a.Send(testContext(t), nil, nil, []int{int(r.Fd())}) },
		"SendOwned":    func() error { return a.SendOwned(nil, nil, []int{int(r.Fd())}) },
		"SendBorrowed": func() error { return a.SendBorrowed(nil, nil, []int{int(r.Fd())}) },
	} {
		if err := send(); !errors.Is(err, ErrFDsRefused) {
			t.Errorf("%s with a descriptor = %v; want ErrFDsRefused", name, err)
		}
	}
	if err := a.Send(testContext(t), &wire.Header{Procedure: "/p/M"}, nil, nil); err != nil {
		t.Fatalf("a frame without descriptors after the refusals: %v", err)
	}
}

// A link runs on an accepted connection of a listening unix socket, not
// only on a socketpair: frames go both ways.
func TestLinkOnAcceptedConnection(t *testing.T) {
	checkLeaks(t)
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *os.File, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			accepted <- nil
			return
		}
		f, _ := c.File()
		c.Close()
		accepted <- f
	}()
	cc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := cc.File()
	cc.Close()
	if err != nil {
		t.Fatal(err)
	}
	sf := <-accepted
	if sf == nil {
		t.Fatal("accept failed")
	}
	sc, cl := newCollector(false), newCollector(false)
	server := startLink(t, sf, sc.handle, WithoutFDs())
	client := startLink(t, cf, cl.handle, WithoutFDs())
	if err := client.Send(testContext(t), &wire.Header{Procedure: "/a/Ping", CallID: 1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	got := sc.wait(t, 1)
	if got[0].hdr.Procedure != "/a/Ping" {
		t.Fatalf("server got %q", got[0].hdr.Procedure)
	}
	if err := server.Send(testContext(t), &wire.Header{ReplyTo: 1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if r := cl.wait(t, 1); r[0].hdr.ReplyTo != 1 {
		t.Fatalf("client got reply to %d", r[0].hdr.ReplyTo)
	}
}
