package link

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw reads, and Go's sysmon thread.
//
// A link's recvmsg is a raw system call when it can be (see
// rawNonblocking in sys_linux.go): syscall.Syscall's entersyscall wakes
// the sysmon thread out of its deep sleep whenever the process was idle,
// which in a round trip is once per message, a futex wake-up and a thread
// woken on another CPU on the round trip's serial path.
//
// But that wake-up is also how Go keeps sysmon working: sysmon sleeps
// deeply (up to a minute, or until the next timer) when every P is idle,
// and only a system call (entersyscall or exitsyscall), the start of a
// garbage collection or the next timer ends that sleep. A goroutine woken
// by the netpoller normally reads with a system call before it runs user
// code, which wakes sysmon; one that read with a raw call and then ran a
// long computation on every P would never be preempted (nor would the
// netpoller be polled by sysmon) until sysmon's sleep ran out: a worker
// whose goroutines all spin would not even handle its primary's death
// (TestPrimaryDeathLeavesNoWorker/sigkill_busy fails that way).
//
// So a read is raw only while a timer is pending, which bounds sysmon's
// deep sleep: the first read after a quiet spell is a plain system call
// (it wakes sysmon), and it arms the timer first (so that sysmon, once
// woken, sleeps no longer than the timer). While reads keep coming, the
// timer is re-armed every rawReadPeriod; after a period without a raw
// read it lapses, after one more period that covers a read racing with
// the lapse. The cost is one timer firing every rawReadPeriod per busy
// process, nothing when idle.

// rawReadPeriod bounds how long sysmon can sleep while reads are raw, and
// so how long a goroutine that runs on every P after a raw read can go
// without sysmon (sysmon then preempts it within its usual 10 ms).
const rawReadPeriod = 10 * time.Millisecond

// rawReads is the process's guard of raw reads (one for every link).
var rawReads rawReadGuard

type rawReadGuard struct {
	armed  atomic.Bool // a timer is pending: reads may be raw
	active atomic.Bool // a raw read happened since the last firing

	mu      sync.Mutex
	t       *time.Timer
	lapsing bool          // the last firing saw no read: this period is the grace one
	period  time.Duration // rawReadPeriod when 0 (tests set it)
}

func (g *rawReadGuard) every() time.Duration {
	if g.period > 0 {
		return g.period
	}
	return rawReadPeriod
}

// raw reports whether the next read may be a raw system call; when not, it
// has armed the timer, and the read must be a plain system call.
func (g *rawReadGuard) raw() bool {
	if g.armed.Load() {
		if !g.active.Load() {
			g.active.Store(true)
		}
		return true
	}
	g.arm()
	return false
}

// arm makes a timer pending and allows raw reads.
func (g *rawReadGuard) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.armed.Load() {
		return
	}
	if g.t == nil {
		g.t = time.AfterFunc(g.every(), g.fire)
	} else {
		g.t.Reset(g.every())
	}
	g.lapsing = false
	g.armed.Store(true)
}

// fire runs when a period ends: the timer is re-armed while reads come;
// after a quiet period raw reads stop, and the timer stays pending one
// more period for a read that saw them allowed just before.
func (g *rawReadGuard) fire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.active.Swap(false):
		g.t.Reset(g.every())
		g.lapsing = false
	case g.armed.Load():
		// The timer is reset before raw reads stop: a read that saw
		// them allowed is covered by the pending timer.
		g.t.Reset(g.every())
		g.lapsing = true
		g.armed.Store(false)
	default:
		// The grace period is over with no read: no timer is pending.
		g.lapsing = false
	}
}

// RawSyscallAllowed reports whether a system call that cannot block (on a
// non-blocking descriptor) may be made raw now, under the same guard as the
// link's reads: while it returns true a timer is pending, which bounds
// sysmon's deep sleep; when it returns false it has armed that timer, and
// the call must be a plain one (which wakes sysmon). The round-robin
// primary closes its copies of handed-off connections this way: with its
// accept4, recvmsg and sendmsg raw, a plain close was the system call that
// woke sysmon after every idle spell.
func RawSyscallAllowed() bool { return rawReads.raw() }

// recvmsgSyscall makes the recvmsg system call: raw when rawReads allows
// it, else plain.
func recvmsgSyscall(fd int, msg *unix.Msghdr) (uintptr, unix.Errno) {
	if rawReads.raw() {
		n, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(msg)), unix.MSG_CMSG_CLOEXEC)
		return n, errno
	}
	n, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(msg)), unix.MSG_CMSG_CLOEXEC)
	return n, errno
}

// sendmsgFD sends p with the control message oob (descriptors) on the
// non-blocking socket fd with one sendmsg, as unix.SendmsgN does, but as a
// raw system call when rawReads allows it: the link's socket is
// non-blocking, so the call never blocks the thread, and a plain one wakes
// sysmon from its deep sleep on the first system call after every idle
// spell (see the top of this file, and rawNonblocking).
func sendmsgFD(fd int, p, oob []byte, flags int) (int, error) {
	if !rawReads.raw() || len(p) == 0 {
		return unix.SendmsgN(fd, p, oob, nil, flags)
	}
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	msg := unix.Msghdr{Iov: &iov}
	msg.SetIovlen(1)
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	n, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags))
	if errno != 0 {
		return int(n), errno
	}
	return int(n), nil
}
