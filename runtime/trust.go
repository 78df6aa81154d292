package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"slices"

	"github.com/herd-go/herd/runtime/internal/nodump"
)

// Refusals of a worker's Listen: the primary shares with a worker only the
// sockets it was told to share. Each is also reported to the primary as an
// error event (CodePermissionDenied) naming the worker. Test with
// errors.Is.
var (
	// ErrFDNotShareable: the descriptor named by WithListenFD or
	// WithListenFDName is not one the primary declared shareable
	// (WithShareableFDs, or systemd's LISTEN_FDS), or is not a listening
	// socket of the requested network.
	ErrFDNotShareable = errors.New("herd: descriptor not shareable")
	// ErrUnixPathNotAllowed: the unix socket path is outside the
	// directories the primary allows (WithUnixSocketDirs; by default the
	// worker's working directory and below), or a directory on the way is
	// a symbolic link.
	ErrUnixPathNotAllowed = errors.New("herd: unix socket path not allowed")
	// ErrUnixModeNotAllowed: WithUnixMode asked for permission bits beyond
	// the primary's limit (WithUnixModeLimit, by default 0600).
	ErrUnixModeNotAllowed = errors.New("herd: unix socket mode not allowed")
	// ErrTooManyListeners: the worker already holds as many cluster
	// listeners as the primary allows one worker (WithMaxListeners, by
	// default 256). Reported to the primary with CodeResourceExhausted.
	ErrTooManyListeners = errors.New("herd: too many listeners")
)

// defaultMaxListeners bounds the cluster listeners of one worker, so that
// one worker cannot make the primary bind sockets (each a descriptor of the
// primary) without limit.
const defaultMaxListeners = 256

// defaultUnixMode is the mode of a unix socket file the primary creates for
// a worker that asked for none: only the primary's user may connect.
const defaultUnixMode os.FileMode = 0o600

// trustSettings are the primary's limits on what workers may ask of it.
type trustSettings struct {
	shareableFDs []int    // descriptors workers may listen on, besides systemd's
	unixDirs     []string // where the primary creates unix sockets; nil: the worker's directory
	unixModeSet  bool
	unixMode     os.FileMode // the widest mode a worker may ask for
	nonDumpable  int8        // 0: when the credential differs; 1: always; -1: never
	maxListeners int         // per worker; 0: defaultMaxListeners
}

// modeLimit is the widest unix socket mode a worker may ask for.
func (t *trustSettings) modeLimit() os.FileMode {
	if t.unixModeSet {
		return t.unixMode
	}
	return defaultUnixMode
}

// WithShareableFDs declares descriptors of the primary that workers may
// listen on with WithListenFD (Node's listen({fd})): sockets the primary
// inherited or opened for its workers. Each must be a listening socket
// (or, for ListenPacket, a datagram socket) of the network the worker
// names. Descriptors passed by systemd socket activation (LISTEN_FDS) are
// shareable without this option. A worker naming any other descriptor gets
// ErrFDNotShareable: the primary's other sockets (its own servers, the
// links to other workers) are never reachable. The numbers must keep
// naming the same sockets while workers may listen on them.
func WithShareableFDs(fds ...int) PrimaryOption {
	return primaryOptionFunc(func(s *settings) {
		s.trust.shareableFDs = append(slices.Clip(s.trust.shareableFDs), fds...)
	})
}

// WithUnixSocketDirs sets the directories in which the primary creates unix
// sockets for workers (at any depth below them), instead of the default:
// each worker's working directory (WithDir, else the primary's) and below.
// The directories themselves are trusted as given; below them the primary
// follows no symbolic link, so a worker cannot redirect a socket elsewhere
// by planting one (Linux; elsewhere the check and the bind are not one
// step). A path outside them fails with ErrUnixPathNotAllowed; with no
// directories, workers may have no unix socket files at all (abstract
// sockets, which have no file, are not concerned).
func WithUnixSocketDirs(dirs ...string) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.trust.unixDirs = append([]string{}, dirs...) })
}

// WithUnixModeLimit sets the widest permission bits a worker may ask for
// with WithUnixMode (default 0600: only the primary's user may connect). A
// socket a worker asks no mode for is created 0600 (within the limit).
// Asking for more fails with ErrUnixModeNotAllowed. Node's readableAll and
// writableAll need WithUnixModeLimit(0o666).
func WithUnixModeLimit(mode os.FileMode) PrimaryOption {
	return primaryOptionFunc(func(s *settings) {
		s.trust.unixMode = mode.Perm()
		s.trust.unixModeSet = true
	})
}

// WithMaxListeners bounds the cluster listeners (Listen and ListenPacket
// calls that the primary serves) one worker may hold open at once; default
// 256. Each may be a socket the primary binds and holds, so without a bound
// one worker could exhaust the primary's descriptors. A Listen beyond it
// fails with ErrTooManyListeners.
func WithMaxListeners(n int) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.trust.maxListeners = n })
}

// WithNonDumpable sets whether workers make themselves non-dumpable
// (Linux's PR_SET_DUMPABLE 0) as they start. A non-dumpable process can be
// reached through ptrace, pidfd_getfd, process_vm_readv or its /proc files
// only with CAP_SYS_PTRACE, so workers running as one user cannot take each
// other's descriptors or read each other's memory. The cost: no core dumps
// (unless fs.suid_dumpable says otherwise), debuggers, strace and profilers
// need CAP_SYS_PTRACE, and the worker's /proc/PID files belong to root, so
// tools running as the worker's user cannot read them.
//
// By default a worker is made non-dumpable when it runs with a credential
// (WithCredential) other than the primary's, and left dumpable otherwise.
// Only workers that import this package honour it (the runtime's
// initialisation does it, before main and before any other herd code);
// see SECURITY.md for the short window between execve and that moment. It
// has no effect outside Linux.
func WithNonDumpable(on bool) PrimaryOption {
	return primaryOptionFunc(func(s *settings) {
		s.trust.nonDumpable = -1
		if on {
			s.trust.nonDumpable = 1
		}
	})
}

// workerTrust is what one worker may ask of the primary, fixed at its fork.
type workerTrust struct {
	dir          string   // the worker's working directory, absolute
	unixDirs     []string // where the primary creates unix sockets for it, absolute
	modeLimit    os.FileMode
	maxListeners int
}

// forWorker is the trust a worker forked with working directory dir (empty:
// the primary's) gets.
func (t *trustSettings) forWorker(dir string) workerTrust {
	wt := workerTrust{modeLimit: t.modeLimit(), maxListeners: t.maxListeners}
	if wt.maxListeners <= 0 {
		wt.maxListeners = defaultMaxListeners
	}
	if abs, err := filepath.Abs(dir); err == nil { // dir "" is the primary's
		wt.dir = abs
	}
	dirs := t.unixDirs
	if dirs == nil && wt.dir != "" {
		dirs = []string{wt.dir}
	}
	for _, d := range dirs {
		if abs, err := filepath.Abs(d); err == nil {
			wt.unixDirs = append(wt.unixDirs, abs)
		}
	}
	return wt
}

// nonDumpableFor reports whether a worker run with cred (nil: the
// primary's own) is made non-dumpable.
func (t *trustSettings) nonDumpableFor(cred *credential) bool {
	switch t.nonDumpable {
	case 1:
		return true
	case -1:
		return false
	}
	return cred != nil && (int(cred.uid) != os.Geteuid() || int(cred.gid) != os.Getegid())
}

// envNonDumpable is the environment variable that asks a worker to make
// itself non-dumpable; the primary sets it and nobody else can.
const envNonDumpable = nodump.Env
