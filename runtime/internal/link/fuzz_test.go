//go:build linux || darwin

package link

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// FuzzLinkReader writes arbitrary bytes, with nfds%4 pipe write ends
// attached, into the raw end of a link's socket, then closes it. The link
// must not panic, must end with ErrPeerClosed, wire.ErrFrameTooLarge or a
// *wire.ProtocolError, and must close every descriptor it received (the
// handler closes those it is given): afterwards each pipe reads EOF, and
// the process has as many descriptors open as before. Seeds live in
// testdata/fuzz/FuzzLinkReader.
func FuzzLinkReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, nfds uint8) {
		before := openFDs(t)
		fa, fb, err := Pair()
		if err != nil {
			t.Fatal(err)
		}
		l, err := New(fa, func(env *wire.Envelope, files []*os.File) error {
			if len(files) != int(env.FDCount) {
				t.Errorf("handler got %d files for FDCount %d", len(files), env.FDCount)
			}
			for _, f := range files {
				f.Close()
			}
			return nil
		}, WithMaxFrameSize(1<<16), WithReadBufferSize(512))
		if err != nil {
			t.Fatal(err)
		}
		raw := int(fb.Fd())
		var readEnds []*os.File
		var fds []int
		if len(data) > 0 {
			for range nfds % 4 {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				readEnds = append(readEnds, r)
				// Keep only a raw descriptor, closed below once sent.
				wfd, err := unix.Dup(int(w.Fd()))
				w.Close()
				if err != nil {
					t.Fatal(err)
				}
				fds = append(fds, wfd)
			}
		}
		p := data
		if len(fds) > 0 {
			n, err := unix.SendmsgN(raw, p, unix.UnixRights(fds...), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		for len(p) > 0 {
			n, err := unix.Write(raw, p)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				break // the link has ended already (EPIPE)
			}
			p = p[n:]
		}
		fb.Close()
		for _, fd := range fds {
			unix.Close(fd) // our copies of the write ends
		}
		<-l.Done()

		err = l.Err()
		var pe *wire.ProtocolError
		if !errors.Is(err, ErrPeerClosed) && !errors.Is(err, wire.ErrFrameTooLarge) && !errors.As(err, &pe) {
			t.Fatalf("link ended with %v (%T), want ErrPeerClosed, ErrFrameTooLarge or a ProtocolError", err, err)
		}
		for _, r := range readEnds {
			expectEOF(t, r)
			r.Close()
		}
		if after := openFDs(t); after != before {
			t.Fatalf("%d descriptors open before, %d after", before, after)
		}
	})
}
