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
// exits. Until the worker runtime has installed its handler, the primary's
// SIGKILL parent-death signal (set at exec) is in force, so a worker that
// never starts the runtime, or another program run with WithExec, still dies
// with the primary.
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
		r.done <- r.cmd.Start()
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

// watchParentDeath arranges for onDeath to run when the primary dies: it
// catches sigParentDeath, replaces the SIGKILL parent-death signal with it,
// and then checks the parent is still the primary, which closes the race
// with a primary that died before the prctl.
func watchParentDeath(primaryPID int, onDeath func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigParentDeath)
	quit := make(chan struct{})
	go func() {
		select {
		case <-ch:
			onDeath()
		case <-quit:
		}
	}()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(sigParentDeath), 0, 0, 0); err == nil {
		if primaryPID != 0 && os.Getppid() != primaryPID {
			go onDeath()
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(ch)
			close(quit)
		})
	}
}
