//go:build unix && !linux

package runtime

import (
	"os"
	"os/exec"
	"syscall"
)

// prepareCommand sets the process attributes every worker gets. There is no
// parent-death signal outside Linux; a worker learns of its primary's death
// from the end of its link.
func prepareCommand(cmd *exec.Cmd, cred *credential) {
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if cred != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: cred.uid, Gid: cred.gid}
	}
}

// startProcess starts cmd.
func startForker() {}

func startProcess(cmd *exec.Cmd) error { return cmd.Start() }

// armParentDeath does nothing: there is no parent-death signal outside
// Linux.
func armParentDeath(primaryPID int) {}

// watchParentDeath checks once that the primary is still the parent; after
// that, the end of the link is the signal.
func watchParentDeath(primaryPID int, onDeath func()) (stop func()) {
	if primaryPID != 0 && os.Getppid() != primaryPID {
		go onDeath()
	}
	return func() {}
}
