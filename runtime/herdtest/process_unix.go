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
