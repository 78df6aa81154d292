//go:build linux

package runtime

import (
	"errors"
	"log/slog"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime/internal/nodump"
)

func init() {
	if nodump.Err != nil {
		slog.Warn("herd: worker could not make itself non-dumpable", "error", nodump.Err)
	}
}

// dirOpenFlags opens a directory only to name it: O_PATH needs no
// permission on the directory itself and allows no reading of it.
const dirOpenFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC

// bindPath is the address the socket is bound to: the file's name in the
// directory the primary holds open, through /proc/self/fd. bind(2) takes a
// path, not a directory descriptor (there is no bindat on Linux), so
// resolving the path again would reopen the race the directory descriptor
// closes: between the check and the bind a worker could replace a
// directory on the way with a symbolic link. The kernel resolves
// /proc/self/fd/N to the very directory N is open on (a "magic link"),
// wherever it now is and whatever its path names now, and only the last
// component is looked up by name; bind never follows a symbolic link there
// (an existing name fails with EADDRINUSE). The path is also short, so
// sockets deep below the 108-byte limit of sun_path work.
func (s *unixSocket) bindPath() string {
	return "/proc/self/fd/" + strconv.Itoa(s.dir) + "/" + s.name
}

// modeBeforeBind gives the socket its mode before bind creates its file:
// Linux creates the file with the socket inode's mode minus the umask, so
// the file never grants more than asked, not even for a moment.
func modeBeforeBind(fd int, mode os.FileMode) error {
	return os.NewSyscallError("fchmod", unix.Fchmod(fd, uint32(mode)))
}

// chmod sets the exact mode on the socket file the umask may have narrowed.
// chmod(2) follows symbolic links and fchmodat's AT_SYMLINK_NOFOLLOW needs
// Linux 6.6 (fchmodat2), so the file is opened with O_PATH|O_NOFOLLOW in
// the held directory, checked to be the primary's socket, and changed
// through its /proc/self/fd magic link, which names that inode and no
// other.
func (s *unixSocket) chmod() error {
	fd, err := unix.Openat(s.dir, s.name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: s.path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: s.path, Err: err}
	}
	if !ours(&st) {
		return &os.PathError{Op: "chmod", Path: s.path, Err: errors.New("the socket file was replaced")}
	}
	if os.FileMode(st.Mode).Perm() == s.mode {
		return nil
	}
	if err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), uint32(s.mode)); err != nil {
		return &os.PathError{Op: "chmod", Path: s.path, Err: err}
	}
	return nil
}
