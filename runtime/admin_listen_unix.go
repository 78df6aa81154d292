//go:build unix

package runtime

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// adminSocketFile is the admin socket's file, removed when the server
// closes if it is still the one the server created.
type adminSocketFile struct {
	path string
	ino  uint64
	dev  uint64
}

// listenAdmin creates the admin socket at path with the given mode. It
// binds, sets the mode, and only then listens, so that no client can
// connect while the file still has the umask's mode. A socket file left by
// a primary that died (connecting to it is refused) is replaced; a live one,
// or a file of another type, is an error.
func listenAdmin(path string, mode os.FileMode) (*net.UnixListener, *adminSocketFile, error) {
	if err := clearStaleSocket(path); err != nil {
		return nil, nil, err
	}
	syscall.ForkLock.RLock() // no fork between socket and close-on-exec
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (*net.UnixListener, *adminSocketFile, error) {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("%s %s: %w", op, path, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return fail("bind", err)
	}
	var st unix.Stat_t
	if err := unix.Fchmodat(unix.AT_FDCWD, path, uint32(mode.Perm()), 0); err != nil {
		os.Remove(path)
		return fail("chmod", err)
	}
	if err := unix.Stat(path, &st); err != nil {
		os.Remove(path)
		return fail("stat", err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		os.Remove(path)
		return fail("listen", err)
	}
	f := os.NewFile(uintptr(fd), path)
	l, err := net.FileListener(f) // a duplicate, non-blocking
	f.Close()
	if err != nil {
		os.Remove(path)
		return nil, nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return l.(*net.UnixListener), &adminSocketFile{path: path, ino: uint64(st.Ino), dev: uint64(st.Dev)}, nil
}

// clearStaleSocket removes a socket file at path that no process listens
// on any more.
func clearStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != os.ModeSocket:
		return fmt.Errorf("%s exists and is not a socket; not replacing it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another process serves this socket (a primary still running?)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether the socket is stale: %w", path, err)
	}
	return os.Remove(path)
}

// remove removes the socket file if it is still the one created.
func (s *adminSocketFile) remove() {
	if s == nil {
		return
	}
	var st unix.Stat_t
	if unix.Lstat(s.path, &st) == nil && uint64(st.Ino) == s.ino && uint64(st.Dev) == s.dev {
		os.Remove(s.path)
	}
}
