//go:build unix && !linux

package runtime

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// dirOpenFlags opens a directory to hold it (there is no O_PATH here).
const dirOpenFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC

// bindPath is the address the socket is bound to. Without /proc/self/fd
// (and without bindat, which only FreeBSD has) bind resolves the path
// again: the directories on the way were checked, but a worker that owns
// one of them could swap it for a symbolic link between the check and the
// bind. SECURITY.md lists this gap; on Linux the bind goes through the
// held directory.
func (s *unixSocket) bindPath() string {
	return shortUnixPath(filepath.Join(s.dirPath(), s.name))
}

func (s *unixSocket) dirPath() string { return filepath.Dir(s.path) }

// modeBeforeBind does nothing: these systems ignore a socket's mode at
// bind. chmod sets it afterwards.
func modeBeforeBind(fd int, mode os.FileMode) error { return nil }

// chmod sets the socket file's mode, in the held directory, without
// following a symbolic link.
func (s *unixSocket) chmod() error {
	var st unix.Stat_t
	if err := unix.Fstatat(s.dir, s.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "stat", Path: s.path, Err: err}
	}
	if !ours(&st) {
		return &os.PathError{Op: "chmod", Path: s.path, Err: errors.New("the socket file was replaced")}
	}
	if err := unix.Fchmodat(s.dir, s.name, uint32(s.mode), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "chmod", Path: s.path, Err: err}
	}
	return nil
}
