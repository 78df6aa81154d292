//go:build unix

package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// refusal is a Listen the primary refused: what the worker asked for is
// not the primary's to share with it. The primary answers with its kind
// and message; the worker's Listen returns it, wrapped in a *net.OpError,
// and it matches the kind's sentinel (ErrFDNotShareable, ...) with
// errors.Is.
type refusal struct {
	kind herdv1.ListenRefusal
	msg  string
}

func (r *refusal) Error() string { return r.msg }

// Unwrap returns the sentinel of the refusal's kind.
func (r *refusal) Unwrap() error {
	switch r.kind {
	case herdv1.ListenRefusal_LISTEN_REFUSAL_FD_NOT_SHAREABLE:
		return ErrFDNotShareable
	case herdv1.ListenRefusal_LISTEN_REFUSAL_UNIX_PATH_NOT_ALLOWED:
		return ErrUnixPathNotAllowed
	case herdv1.ListenRefusal_LISTEN_REFUSAL_UNIX_MODE_NOT_ALLOWED:
		return ErrUnixModeNotAllowed
	case herdv1.ListenRefusal_LISTEN_REFUSAL_TOO_MANY_LISTENERS:
		return ErrTooManyListeners
	}
	return nil
}

// code is the code of the refusal's error event.
func (r *refusal) code() Code {
	if r.kind == herdv1.ListenRefusal_LISTEN_REFUSAL_TOO_MANY_LISTENERS {
		return CodeResourceExhausted
	}
	return CodePermissionDenied
}

func refuse(kind herdv1.ListenRefusal, format string, args ...any) *refusal {
	r := &refusal{kind: kind}
	r.msg = r.Unwrap().Error() + ": " + fmt.Sprintf(format, args...)
	return r
}

// listenFailure is the response to a Listen that failed: a refusal, or a
// failed bind.
func listenFailure(err error) *herdv1.ListenResponse {
	var r *refusal
	if errors.As(err, &r) {
		return &herdv1.ListenResponse{Refusal: r.kind, Error: r.msg}
	}
	return bindFailure(err)
}

// refusedListen is the refusal in res, or nil. A kind this side does not
// know matches no sentinel but keeps its message.
func refusedListen(res *herdv1.ListenResponse) *refusal {
	if res.GetRefusal() == herdv1.ListenRefusal_LISTEN_REFUSAL_UNSPECIFIED {
		return nil
	}
	return &refusal{kind: res.GetRefusal(), msg: res.GetError()}
}

// isSystemdFD reports whether fd is one of the descriptors systemd passed
// to this process by socket activation (taken over by NewPrimary; see
// takeActivation).
func isSystemdFD(fd int) bool {
	takeActivation()
	activation.mu.Lock()
	defer activation.mu.Unlock()
	return slices.Contains(activation.fds, fd)
}

// shareableFD returns a duplicate of the descriptor a worker's Listen names
// (by number or by systemd name), when the primary shares it: it is one
// the user declared (WithShareableFDs) or one systemd passed, and it is a
// listening socket (a datagram socket for UDP) of the requested network.
// Anything else is a refusal: a worker reaches none of the primary's other
// descriptors, such as its own servers and its links to other workers.
//
// The checks run on the duplicate, so the socket shared is the socket
// checked, even if the number is reused meanwhile.
func (pt *portTable) shareableFD(key handleKey, network string) (*os.File, error) {
	const notShareable = herdv1.ListenRefusal_LISTEN_REFUSAL_FD_NOT_SHAREABLE
	fd := int(key.fd)
	if key.fdName != "" {
		n, err := systemdFD(key.fdName)
		if err != nil {
			return nil, refuse(notShareable, "descriptor named %q: %v", key.fdName, err)
		}
		fd = n
	} else {
		pt.p.mu.Lock()
		declared := slices.Contains(pt.p.settings.trust.shareableFDs, fd)
		pt.p.mu.Unlock()
		if !declared && !isSystemdFD(fd) {
			return nil, refuse(notShareable, "descriptor %d was not declared shareable (WithShareableFDs, LISTEN_FDS)", fd)
		}
	}
	d, err := dupFD(fd)
	if err != nil {
		return nil, refuse(notShareable, "descriptor %d: %v", fd, os.NewSyscallError("dup", err))
	}
	if err := checkListenSocket(d, network); err != nil {
		unix.Close(d)
		return nil, refuse(notShareable, "descriptor %d: %v", fd, err)
	}
	return os.NewFile(uintptr(d), "fd"+strconv.Itoa(fd)), nil
}

// checkListenSocket checks that fd is a socket a worker may listen on with
// network: a listening stream socket (SO_ACCEPTCONN) for tcp and unix, a
// datagram socket for udp, of the network's address family (from
// getsockname, which every system has; SO_DOMAIN is Linux's).
func checkListenSocket(fd int, network string) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("not a socket: %w", os.NewSyscallError("getsockopt", err))
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return os.NewSyscallError("getsockname", err)
	}
	var family string
	switch sa.(type) {
	case *unix.SockaddrInet4:
		family = "4"
	case *unix.SockaddrInet6:
		family = "6"
	case *unix.SockaddrUnix:
		family = "unix"
	}
	var wantFamily bool
	switch network {
	case "tcp", "udp":
		wantFamily = family == "4" || family == "6"
	case "tcp4", "udp4":
		wantFamily = family == "4"
	case "tcp6", "udp6":
		wantFamily = family == "6"
	case "unix":
		wantFamily = family == "unix"
	}
	packet := isPacketNetwork(network)
	switch {
	case !wantFamily:
		return fmt.Errorf("not a %s socket", network)
	case packet && typ != unix.SOCK_DGRAM:
		return fmt.Errorf("not a datagram socket")
	case packet:
		return nil
	case typ != unix.SOCK_STREAM:
		return fmt.Errorf("not a stream socket")
	}
	accepting, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if accepting == 0 {
		return errors.New("not a listening socket")
	}
	return nil
}

// unixSocket is a unix socket file the primary creates for a worker, in a
// directory the worker may have sockets in. The primary holds that
// directory open from the check to the removal of the file, and reaches it
// without following symbolic links below the allowed directory, so a
// worker that owns directories on the way cannot redirect the socket (or
// its removal) elsewhere by planting or swapping a link.
type unixSocket struct {
	path string // the absolute path, as reported
	dir  int    // the directory, opened with dirOpenFlags
	name string // the file's name in dir
	mode os.FileMode
}

// openUnixSocket checks that a worker may have a unix socket at path with
// mode (zero: the default) and opens its directory. path is absolute, or
// relative to the worker's directory.
func (wt *workerTrust) openUnixSocket(path string, mode os.FileMode) (*unixSocket, error) {
	const pathRefused = herdv1.ListenRefusal_LISTEN_REFUSAL_UNIX_PATH_NOT_ALLOWED
	if !filepath.IsAbs(path) {
		path = filepath.Join(wt.dir, path)
	}
	path = filepath.Clean(path)
	parent, name := filepath.Dir(path), filepath.Base(path)
	if name == "/" || name == "." || name == ".." {
		return nil, refuse(pathRefused, "%s is not a file name", path)
	}
	root, rest, ok := wt.allowedRoot(parent)
	if !ok {
		return nil, refuse(pathRefused, "%s is outside the directories the primary allows (WithUnixSocketDirs): %s", path, strings.Join(wt.unixDirs, ", "))
	}
	if mode == 0 {
		mode = defaultUnixMode & wt.modeLimit
	}
	if mode&^wt.modeLimit != 0 {
		return nil, refuse(herdv1.ListenRefusal_LISTEN_REFUSAL_UNIX_MODE_NOT_ALLOWED,
			"mode %#o for %s is beyond the primary's limit %#o (WithUnixModeLimit)", uint32(mode), path, uint32(wt.modeLimit))
	}
	dir, err := unix.Open(root, dirOpenFlags, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	sub := root
	for _, c := range rest {
		sub = filepath.Join(sub, c)
		next, err := unix.Openat(dir, c, dirOpenFlags|unix.O_NOFOLLOW, 0)
		if err != nil {
			var st unix.Stat_t
			isLink := unix.Fstatat(dir, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
			unix.Close(dir)
			if isLink {
				return nil, refuse(pathRefused, "%s: %s is a symbolic link", path, sub)
			}
			return nil, &os.PathError{Op: "open", Path: sub, Err: err}
		}
		unix.Close(dir)
		dir = next
	}
	return &unixSocket{path: path, dir: dir, name: name, mode: mode}, nil
}

// allowedRoot finds the allowed directory that holds dir, and the names
// from it down to dir. An allowed directory matches as given and as its
// symbolic links resolve (the primary trusts the allowed directories
// themselves).
func (wt *workerTrust) allowedRoot(dir string) (root string, rest []string, ok bool) {
	for _, r := range wt.unixDirs {
		for _, spelling := range []string{r, resolved(r)} {
			if spelling == "" {
				continue
			}
			rel, err := filepath.Rel(spelling, dir)
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
				continue
			}
			if rel == "." {
				return spelling, nil, true
			}
			return spelling, strings.Split(rel, "/"), true
		}
	}
	return "", nil, false
}

func resolved(dir string) string {
	r, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	return r
}

// listen creates the socket and its file, and sets the file's mode.
func (s *unixSocket) listen(ctx context.Context, backlog int) (net.Listener, error) {
	lc := &net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = modeBeforeBind(int(fd), s.mode) }); cerr != nil {
			return cerr
		}
		return err
	}}
	ln, err := lc.Listen(ctx, "unix", s.bindPath())
	if err != nil {
		if oe, ok := err.(*net.OpError); ok {
			oe.Addr = &net.UnixAddr{Name: s.path, Net: "unix"}
		}
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // the handle removes the file itself
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		s.remove()
		return nil, &net.OpError{Op: "listen", Net: "unix", Addr: &net.UnixAddr{Name: s.path, Net: "unix"}, Err: err}
	}
	if backlog > 0 {
		if err := controlFD(ln.(syscall.Conn), func(fd int) error {
			return os.NewSyscallError("listen", unix.Listen(fd, backlog))
		}); err != nil {
			return fail(err)
		}
	}
	if err := s.chmod(); err != nil {
		return fail(err)
	}
	return ln, nil
}

// ours reports whether st is the socket file the primary created: a
// socket of the primary's effective user with one link (a worker may have
// replaced the file since, with its own file or a link to another).
func ours(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFSOCK && int(st.Uid) == os.Geteuid() && st.Nlink == 1
}

// remove removes the socket file, when it is still a socket, from the
// directory it was created in, and closes the directory. A nil s does
// nothing.
func (s *unixSocket) remove() {
	if s == nil || s.dir < 0 {
		return
	}
	var st unix.Stat_t
	if unix.Fstatat(s.dir, s.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		unix.Unlinkat(s.dir, s.name, 0)
	}
	unix.Close(s.dir)
	s.dir = -1
}

// removeSocket removes the handle's unix socket file, if the primary
// created one.
func (b *handleBase) removeSocket() { b.sock.remove() }
