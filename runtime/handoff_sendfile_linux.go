//go:build linux

package runtime

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// maxSendfile bounds one sendfile(2) call, as the runtime's does.
const maxSendfile = 4 << 20

// sendFile copies r to the connection with sendfile(2) from the file's
// current offset, advancing it. handled is false, with nothing written,
// when r is not a regular file or the kernel refuses sendfile for it.
func (c *handoffConn) sendFile(r io.Reader) (written int64, handled bool, err error) {
	remain := int64(1<<63 - 1)
	lr, isLR := r.(*io.LimitedReader)
	if isLR {
		remain, r = lr.N, lr.R
		if remain <= 0 {
			return 0, true, nil
		}
	}
	src, ok := r.(*os.File)
	if !ok {
		return 0, false, nil
	}
	if fi, err := src.Stat(); err != nil || !fi.Mode().IsRegular() {
		return 0, false, nil
	}
	sc, err := src.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	dc, err := c.f.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	handled = true
	var werr error
	cerr := sc.Control(func(sfd uintptr) {
		werr = dc.Write(func(dfd uintptr) bool {
			for remain > 0 {
				n, e := unix.Sendfile(int(dfd), int(sfd), nil, int(min(remain, maxSendfile)))
				if n > 0 {
					written += int64(n)
					remain -= int64(n)
				}
				switch e {
				case nil:
					if n == 0 {
						return true // the file's end
					}
				case unix.EINTR:
				case unix.EAGAIN:
					return false // wait until the socket takes more
				case unix.EINVAL, unix.ENOSYS, unix.EOPNOTSUPP:
					if written == 0 {
						handled = false // not for this pair: copy instead
					} else {
						err = os.NewSyscallError("sendfile", e)
					}
					return true
				default:
					err = os.NewSyscallError("sendfile", e)
					return true
				}
			}
			return true
		})
	})
	if err == nil {
		err = werr
	}
	if err == nil {
		err = cerr
	}
	if isLR {
		lr.N = remain
	}
	return written, handled, err
}
