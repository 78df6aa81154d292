//go:build unix

package herdtest

import (
	"os/exec"
	"syscall"
)

func setGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
}

// WithCredential runs the program as user uid and group gid (with no
// supplementary groups), as a service manager starts a service under its
// own user; the test must run as root. Unix only.
func WithCredential(uid, gid uint32) ProcessOption {
	return processOption(func(p *Process) {
		if p.cmd.SysProcAttr == nil {
			p.cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		p.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: gid}
	})
}

func killGroup(pgid int) { syscall.Kill(-pgid, syscall.SIGKILL) }

// SignalGroup sends sig to the program's process group (WithProcessGroup):
// the program and every worker it forked.
func (p *Process) SignalGroup(sig syscall.Signal) {
	p.t.Helper()
	if !p.group {
		p.t.Fatalf("herdtest: %s: SignalGroup without WithProcessGroup", p.role)
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		p.t.Fatalf("herdtest: %s: signal group %v: %v", p.role, sig, err)
	}
}
