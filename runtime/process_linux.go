//go:build linux

package runtime

import (
	"os"
	"os/exec"
	"os/signal"
	goruntime "runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// sigParentDeath is the signal a herd worker asks the kernel to send it when
// its primary dies (PR_SET_PDEATHSIG). It is a real-time signal that the
// worker runtime catches, so the worker can run its drain hooks before it
// exits. The primary sets SIGKILL at exec; a worker that imports this
// package replaces it at initialisation (armParentDeath), and another
// program run with WithExec keeps the SIGKILL and still dies with the
// primary.
const sigParentDeath = syscall.Signal(40)

// forker runs every fork on one goroutine locked to one OS thread for the
// life of the process. PR_SET_PDEATHSIG fires when the thread that forked
// the child exits, not when the process does; Go retires threads (for
// example when a goroutine that locked its thread returns), so forking from
// an arbitrary thread could kill healthy workers. A thread that never exits
// makes the parent-death signal mean what it says.
var forker struct {
	once sync.Once
	reqs chan forkRequest
}

type forkRequest struct {
	cmd  *exec.Cmd
	done chan error
}

func forkLoop() {
	goruntime.LockOSThread() // never unlocked: see forker
	for r := range forker.reqs {
		r.done <- startOwn(func() (int, error) { // reaper_linux.go
			if err := r.cmd.Start(); err != nil {
				return 0, err
			}
			return r.cmd.Process.Pid, nil
		})
	}
}

// prepareCommand sets the process attributes every worker gets: the
// parent-death signal and the credentials.
func prepareCommand(cmd *exec.Cmd, cred *credential) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if cred != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: cred.uid, Gid: cred.gid}
	}
}

// startForker starts the forker thread; NewPrimary calls it, so the thread
// exists before any fork.
func startForker() {
	forker.once.Do(func() {
		forker.reqs = make(chan forkRequest)
		go forkLoop()
	})
}

// startProcess starts cmd on the forker thread.
func startProcess(cmd *exec.Cmd) error {
	startForker()
	done := make(chan error, 1)
	forker.reqs <- forkRequest{cmd: cmd, done: done}
	return <-done
}

// parentDeath is the worker's parent-death watch, armed at package
// initialisation by armParentDeath; onDeath is the started Self's handler.
var parentDeath struct {
	mu      sync.Mutex
	onDeath func()
}

// armParentDeath replaces the SIGKILL parent-death signal set at exec with
// the caught sigParentDeath. env.go's init calls it in a worker.
//
// PR_SET_PDEATHSIG is an attribute of a thread, not of a process: when the
// parent dies, the kernel sends each thread's own parent-death signal to the
// whole process, and a thread created later starts with none. The SIGKILL
// set at exec (SysProcAttr.Pdeathsig) belongs to the main thread, the only
// thread there was; replacing it from any other thread adds a second signal
// and leaves the SIGKILL in force, and the SIGKILL wins (the drain hooks
// never run). Package initialisation runs on the main thread (the Go
// runtime locks the main goroutine to it until main.main starts), so this
// prctl reaches the right thread, whichever goroutine later calls Start.
// The main thread lives as long as the process: Go never ends it, even when
// a goroutine locked to it exits. Where initialisation runs elsewhere (a
// c-archive or c-shared build) the SIGKILL stays: the worker still dies
// with its primary, without its drain hooks.
//
// The parent side has its own per-thread rule: the signal fires when the
// thread that forked the worker exits, so the primary forks from one locked
// thread that never exits (forker).
func armParentDeath(primaryPID int) {
	if unix.Gettid() != os.Getpid() {
		return // not the main thread: keep the SIGKILL
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigParentDeath)
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(sigParentDeath), 0, 0, 0); err != nil {
		signal.Stop(ch)
		return
	}
	go waitParentDeath(ch)
	// The primary may have died before the prctl, while the SIGKILL was in
	// force for a process that had not yet been created: then the parent is
	// no longer the primary.
	if primaryPID != 0 && os.Getppid() != primaryPID {
		select {
		case ch <- sigParentDeath:
		default:
		}
	}
}

// waitParentDeath runs the started Self's handler when the primary dies. A
// worker with no started Self (before Start, after its disconnect, or a
// program that never starts one) has nothing to drain and ends as the
// SIGKILL set at exec would have ended it.
func waitParentDeath(ch chan os.Signal) {
	<-ch
	parentDeath.mu.Lock()
	fn := parentDeath.onDeath
	parentDeath.mu.Unlock()
	if fn == nil {
		_ = unix.Kill(os.Getpid(), unix.SIGKILL)
		select {}
	}
	fn()
}

// watchParentDeath makes onDeath the handler of the primary's death until
// stop is called. The signal itself was armed at initialisation
// (armParentDeath); the primary PID was checked then.
func watchParentDeath(primaryPID int, onDeath func()) (stop func()) {
	parentDeath.mu.Lock()
	parentDeath.onDeath = onDeath
	parentDeath.mu.Unlock()
	return func() {
		parentDeath.mu.Lock()
		parentDeath.onDeath = nil
		parentDeath.mu.Unlock()
	}
}
