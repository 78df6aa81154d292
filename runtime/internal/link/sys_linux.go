package link

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendFlags are the flags of every sendmsg. MSG_NOSIGNAL turns the SIGPIPE
// that writing to a socket whose peer is gone would raise into a plain
// EPIPE (Go's runtime would ignore that SIGPIPE for a descriptor other than
// 1 and 2 anyway; this avoids the signal altogether).
const sendFlags = unix.MSG_NOSIGNAL

// Pair returns the two ends of a new connected AF_UNIX SOCK_STREAM
// socketpair, both close-on-exec: give one to New, and the other to the
// peer (for a worker, as an os/exec ExtraFiles entry, which clears
// close-on-exec on the child's copy only).
func Pair() (a, b *os.File, err error) {
	// SOCK_CLOEXEC sets close-on-exec atomically, so a concurrent fork in
	// another goroutine cannot leak the descriptors into its child.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	return os.NewFile(uintptr(fds[0]), "herd-link"), os.NewFile(uintptr(fds[1]), "herd-link"), nil
}

// receiver holds the reader's recvmsg arguments. They live in the Link, so
// that a read allocates nothing: unix.Recvmsg would allocate a
// RawSockaddrAny for the source address on every call (it escapes to the
// heap), an address a connected socket never has.
type receiver struct {
	msg unix.Msghdr
	iov unix.Iovec
}

// recvmsg reads into p (which must not be empty), and control messages into
// oob, with one recvmsg(2).
//
// MSG_CMSG_CLOEXEC makes the kernel set close-on-exec on every descriptor it
// installs from an SCM_RIGHTS message, atomically: received descriptors
// never leak into a child forked concurrently. It is a recvmsg flag, not a
// socket option, and Linux-only (macOS has no equivalent; see
// sys_darwin.go).
//
// Two properties of AF_UNIX stream sockets the link relies on: a recvmsg
// returns the descriptors of a sendmsg together with the first bytes of
// that sendmsg's data (never later), and it stops after the bytes that
// carried descriptors, so one read never returns the descriptors of two
// sendmsgs. The control buffer has room for MaxFDsPerFrame descriptors,
// Linux's SCM_MAX_FD, the most one sendmsg can carry, so MSG_CTRUNC means
// this process could not install them (RLIMIT_NOFILE, a security module):
// the kernel installs the first ones and closes the rest, and the link
// delivers the frame with Envelope.FDsLost set.
func (r *receiver) recvmsg(fd int, p, oob []byte) (n, oobn, flags int, err error) {
	r.iov.Base = &p[0]
	r.iov.SetLen(len(p))
	r.msg.Iov = &r.iov
	r.msg.SetIovlen(1)
	r.msg.Control = &oob[0]
	r.msg.SetControllen(len(oob))
	r.msg.Flags = 0
	// The pointers in r.msg point into the Link's own buffers, which are
	// heap objects that do not move and stay reachable through the Link
	// for the duration of the call.
	//
	// A raw system call while the raw-read guard allows it (no
	// entersyscall/exitsyscall; see rawNonblocking and sysmon_linux.go).
	rn, errno := recvmsgSyscall(fd, &r.msg)
	if errno != 0 {
		return 0, 0, 0, errno
	}
	return int(rn), int(r.msg.Controllen), int(r.msg.Flags), nil
}

// writeFD writes p to the non-blocking descriptor fd with one write(2),
// as unix.Write does, but as a raw system call (see rawNonblocking).
func writeFD(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// rawNonblocking: why the link's reads and direct writes are raw system
// calls on Linux.
//
// Go's syscall.Syscall tells the scheduler the thread may block
// (entersyscall): that lets another thread take the goroutine's P, and,
// when the process has been idle, wakes the sysmon thread from its deep
// sleep (a futex wake-up, and a thread that runs on the other CPU) on the
// first system call after the idle spell. A link end in a round trip is
// idle between every two messages, so on a 2-CPU machine that was about one
// futex wake-up per round trip per process, on the round trip's serial
// path (perf: entersyscallWakeSysmon under the reader's recvmsg). The
// link's socket is non-blocking: recvmsg and write return EAGAIN instead
// of waiting, so they never block the thread, and a raw system call (no
// scheduler hand-off) is what Go's own runtime uses for calls like these.
// A large frame's copy (a 1 MiB recvmsg or write, ~0.1 ms) then holds its
// P like any other computation.
//
// Writes may always be raw: a goroutine that writes was already running.
// Reads are raw only under the guard of sysmon_linux.go: a read is how a
// goroutine woken by the netpoller wakes sysmon, and sysmon must be awake
// to preempt long computations. A frame with descriptors is written with
// sendmsg (sendmsgFD), raw under the same guard: a round-robin primary's
// hand-offs are written by the goroutine a report or a new connection
// woke, and a plain sendmsg there woke sysmon after every idle spell.
