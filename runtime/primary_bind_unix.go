//go:build unix

package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// bindSpec is a socket to create: by the primary for a handle, or by a
// process outside a cluster (or an exclusive worker) for itself.
type bindSpec struct {
	network   string
	address   string // for unix sockets, the path to bind (may be relative)
	backlog   int
	reusePort bool
	ipv6Only  bool
	unixMode  os.FileMode

	deferAccept bool // TCP: TCP_DEFER_ACCEPT (WithDeferAccept)
}

func (b *bindSpec) bindNetwork() string {
	if b.ipv6Only {
		switch b.network {
		case "tcp":
			return "tcp6"
		case "udp":
			return "udp6"
		}
	}
	return b.network
}

func (b *bindSpec) listenConfig() *net.ListenConfig {
	lc := &net.ListenConfig{}
	if b.reusePort {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return os.NewSyscallError("setsockopt", serr)
		}
	}
	return lc
}

// bindListener creates a listening stream socket.
func bindListener(ctx context.Context, b *bindSpec) (net.Listener, error) {
	ln, err := b.listenConfig().Listen(ctx, b.bindNetwork(), b.address)
	if err != nil {
		return nil, err
	}
	if b.backlog > 0 {
		// listen(2) on a listening socket changes its backlog.
		if err := controlFD(ln.(syscall.Conn), func(fd int) error {
			return os.NewSyscallError("listen", unix.Listen(fd, b.backlog))
		}); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if _, ok := ln.(*net.TCPListener); ok && b.deferAccept {
		if err := controlFD(ln.(syscall.Conn), setDeferAccept); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // the handle removes the file itself
		if b.unixMode != 0 && !isAbstract(b.address) {
			if err := os.Chmod(b.address, b.unixMode); err != nil {
				ln.Close()
				os.Remove(b.address)
				return nil, &net.OpError{Op: "listen", Net: b.network, Addr: ln.Addr(), Err: err}
			}
		}
	}
	return ln, nil
}

// bindPacket creates a datagram socket.
func bindPacket(ctx context.Context, b *bindSpec) (net.PacketConn, error) {
	return b.listenConfig().ListenPacket(ctx, b.bindNetwork(), b.address)
}

// controlFD runs fn on c's descriptor.
func controlFD(c syscall.Conn, fn func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func isAbstract(path string) bool { return strings.HasPrefix(path, "@") }

// unlinkSocket removes a unix socket's file, when it still is a socket.
func unlinkSocket(path string) {
	if path == "" || isAbstract(path) {
		return
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
}

// listenLocal is Listen outside a cluster: net.Listen with the options.
func listenLocal(ctx context.Context, network, address string, cfg *listenConfig) (net.Listener, error) {
	if cfg.fd >= 0 || cfg.fdName != "" {
		f, err := ownFD(cfg.fd, cfg.fdName)
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: err}
		}
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, err
		}
		return limitListen(ln, cfg.maxConns), nil
	}
	b := &bindSpec{network: network, address: address, backlog: cfg.backlog,
		reusePort: cfg.policy == SchedReusePort && network != "unix", ipv6Only: cfg.ipv6Only, unixMode: cfg.unixMode,
		deferAccept: cfg.deferAccept}
	ln, err := bindListener(ctx, b)
	if err != nil {
		return nil, err
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true) // as net.Listen does
	}
	return limitListen(ln, cfg.maxConns), nil
}

func listenPacketLocal(ctx context.Context, network, address string, cfg *listenConfig) (net.PacketConn, error) {
	if cfg.fd >= 0 || cfg.fdName != "" {
		f, err := ownFD(cfg.fd, cfg.fdName)
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: err}
		}
		defer f.Close()
		return net.FilePacketConn(f)
	}
	b := &bindSpec{network: network, address: address, reusePort: cfg.policy == SchedReusePort, ipv6Only: cfg.ipv6Only}
	return bindPacket(ctx, b)
}

// ownFD returns a duplicate of one of this process's descriptors, by number
// or by its systemd name, as a file the caller closes; the original stays
// open.
func ownFD(fd int, name string) (*os.File, error) {
	if name != "" {
		n, err := systemdFD(name)
		if err != nil {
			return nil, err
		}
		fd = n
	}
	d, err := dupFD(fd)
	if err != nil {
		return nil, fmt.Errorf("descriptor %d: %w", fd, os.NewSyscallError("dup", err))
	}
	return os.NewFile(uintptr(d), "fd"+strconv.Itoa(fd)), nil
}

// absUnixPath resolves a relative unix socket path in this process's
// working directory.
func absUnixPath(path string) (string, error) {
	if path == "" || isAbstract(path) || filepath.IsAbs(path) {
		return path, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return filepath.Join(wd, path), nil
}

// shortUnixPath is the shorter of path (absolute) and path relative to
// this process's working directory, for the ~108-byte limit of sun_path
// (Node's primary does the same).
func shortUnixPath(path string) string {
	if isAbstract(path) || !filepath.IsAbs(path) {
		return path
	}
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil || len(rel) >= len(path) {
		return path
	}
	return rel
}

// errnoOf extracts the system error number of a failed bind.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}
