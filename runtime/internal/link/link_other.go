//go:build !linux && !darwin

package link

import (
	"os"
	"time"
)

// Pair returns ErrNotSupported: links need AF_UNIX socketpairs with
// SCM_RIGHTS, available here on Linux and macOS only.
func Pair() (a, b *os.File, err error) {
	return nil, nil, ErrNotSupported
}

// New closes f and returns ErrNotSupported: links need AF_UNIX sockets
// with SCM_RIGHTS, available here on Linux and macOS only.
func New(f *os.File, h Handler, opts ...Option) (*Link, error) {
	if f != nil {
		f.Close()
	}
	return nil, ErrNotSupported
}

func checkFDs([]int) error        { return ErrNotSupported }
func dupFDs([]int) ([]int, error) { return nil, ErrNotSupported }
func closeFDs([]int)              {}

func (l *Link) writeDirect([]byte) (int, error)          { return 0, ErrNotSupported }
func (l *Link) writevDirect(_, _, _ []byte) (int, error) { return 0, ErrNotSupported }
func (l *Link) recycle(b []byte) []byte                  { return b[:0] }
func (l *Link) write([]byte) error                       { return ErrNotSupported }
func (l *Link) readLoop(uint64, bool)                    {}

// ReadUntil reports done(): there is no link to read here.
func (l *Link) ReadUntil(done func() bool, spin time.Duration) (ok, read bool) {
	return done(), false
}

// receiver holds per-link recvmsg state on systems with links.
type receiver struct{}

func (l *Link) sendmsgNow([]byte, *fdFrame) (int, error) { return 0, ErrNotSupported }
