//go:build linux

package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// reaper reaps the orphans re-parented to this process: every process when
// it is PID 1 (a container's init, or `unshare --pid --fork`), the
// descendants of its workers when it is a child subreaper
// (PR_SET_CHILD_SUBREAPER, WithSubreaper). A worker that starts a process
// and exits leaves that grandchild to us; when the grandchild exits, it
// stays a zombie, holding its PID and a process-table slot, until we wait
// for it. A container's init that never does fills the PID cgroup's limit
// with zombies.
//
// The difficulty is not to steal the exit status of our own workers: the
// runtime waits for each worker with os/exec (Cmd.Wait, on Linux a waitid on
// the worker's pidfd), and a reaper that called wait4(-1) would reap a
// worker first, so that Cmd.Wait fails with ECHILD and the worker's exit
// code and signal are lost. The scheme:
//
//   - every worker PID is recorded in own by the forker, under mu, in the
//     same critical section as its fork (startProcess): a scan that holds mu
//     never sees a child of ours that is a worker but not yet in own;
//   - on SIGCHLD (and once at start), the reaper first peeks with
//     waitid(P_ALL, WEXITED|WNOHANG|WNOWAIT), which reports a zombie child
//     without reaping it: none means nothing to do; a PID not in own is
//     reaped by that PID alone (wait4(pid)), and the peek repeats;
//   - a peek that finds one of our workers (a zombie whose Cmd.Wait has not
//     yet run) would find it again and again, so the reaper then scans
//     /proc for every zombie whose parent is this process and reaps, by
//     PID, those not in own. Workers are left to Cmd.Wait.
//
// SIGCHLD is coalesced by the kernel, which is why each round reaps every
// zombie it can find rather than one per signal. A worker's PID leaves own
// as soon as its Cmd.Wait has returned (forgetChild), so that a later
// orphan given the same PID is not mistaken for a worker; a scan also drops
// PIDs that are no longer our children.
//
// What this cannot tell apart: a child the primary's program starts itself,
// outside herd (os/exec in the primary), is not in own, so under the reaper
// its exit status is taken, and its Cmd.Wait fails with ECHILD. A primary
// that is PID 1 or a subreaper should run such programs as workers
// (WithExec) or in a process of its own; tini and dumb-init exist for
// programs that cannot.
var reaper struct {
	once sync.Once
	mu   sync.Mutex
	on   bool
	own  map[int]struct{}
	log  *slog.Logger
}

// startReaper starts the reaper when this process is PID 1, or when asked
// to become a child subreaper. It runs once per process; a second primary
// shares it.
func startReaper(log *slog.Logger, subreaper bool) {
	pid1 := os.Getpid() == 1
	if !pid1 && !subreaper {
		return
	}
	reaper.once.Do(func() {
		if !pid1 {
			// PR_SET_CHILD_SUBREAPER: orphaned descendants are
			// re-parented to us rather than to init (prctl(2)).
			if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
				log.Warn("herd: could not become a child subreaper", "error", err)
				return
			}
		}
		reaper.mu.Lock()
		reaper.on = true
		reaper.own = make(map[int]struct{})
		reaper.log = log
		reaper.mu.Unlock()
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGCHLD)
		go func() {
			for {
				reapOrphans()
				<-ch
			}
		}()
		log.Debug("herd: reaping orphans", "pid1", pid1, "subreaper", !pid1)
	})
}

// startOwn starts cmd and, when the reaper runs, records its PID as one of
// ours in the same critical section (see reaper).
func startOwn(start func() (int, error)) error {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	pid, err := start()
	if err == nil && reaper.on {
		reaper.own[pid] = struct{}{}
	}
	return err
}

// forgetChild drops a worker's PID from own once Cmd.Wait has reaped it.
func forgetChild(pid int) {
	reaper.mu.Lock()
	delete(reaper.own, pid)
	reaper.mu.Unlock()
}

// reapOrphans reaps every zombie child that is not a worker.
func reapOrphans() {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		pid := siginfoPID(&info)
		if err != nil || pid == 0 {
			return // ECHILD (no child at all) or no zombie
		}
		if _, ok := reaper.own[pid]; !ok && reapPID(pid) {
			continue
		}
		// A worker's zombie, left to its Cmd.Wait (or one wait4 would not
		// take): find the others.
		scanZombies()
		return
	}
}

// scanZombies reaps the zombie children /proc lists that are not workers,
// and forgets workers that are no longer our children.
func scanZombies() {
	me := os.Getpid()
	dir, err := os.Open("/proc")
	if err != nil {
		reaper.log.Warn("herd: reaper cannot read /proc", "error", err)
		return
	}
	names, _ := dir.Readdirnames(-1)
	dir.Close()
	children := make(map[int]bool)
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		st, err := readProcStat(pid) // proc_stat.go
		if err != nil || st.ppid != me {
			continue
		}
		children[pid] = true
		if _, mine := reaper.own[pid]; st.state == 'Z' && !mine {
			reapPID(pid)
		}
	}
	for pid := range reaper.own {
		if !children[pid] {
			delete(reaper.own, pid)
		}
	}
}

// reapPID waits for one zombie by its PID; WNOHANG keeps a PID that is not
// (or no longer) a zombie child from blocking the reaper.
func reapPID(pid int) bool {
	var ws unix.WaitStatus
	for {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err == nil && got == pid {
			reaper.log.Debug("herd: reaped an orphan", "pid", pid, "status", waitStatusString(ws))
			return true
		}
		return false
	}
}

func waitStatusString(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "signal " + signalName(ws.Signal())
	}
	return fmt.Sprintf("exit %d", ws.ExitStatus())
}

// siginfoPID reads si_pid from a siginfo that waitid filled. x/sys leaves
// the union opaque: it follows si_signo, si_errno and si_code (three 32-bit
// ints) at the union's alignment, a pointer's (offset 16 on 64-bit
// platforms, 12 on 32-bit ones), and si_pid is its first field for SIGCHLD.
// waitid with WNOHANG and no zombie leaves it zero.
func siginfoPID(info *unix.Siginfo) int {
	align := unsafe.Alignof(uintptr(0))
	off := (3*4 + align - 1) &^ (align - 1)
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), off)))
}
