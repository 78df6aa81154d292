//go:build unix

package main

import (
	"fmt"
	"os/exec"
	"syscall"
)

// setProcessGroup starts cmd in a new process group, whose ID is its PID.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProcessGroup kills what is left of the process group cmd started
// (workers a primary left behind). The group is ours: it was created for
// cmd, and its ID is cmd's PID.
func killProcessGroup(cmd *exec.Cmd) {
	if cmd.Process != nil && cmd.Process.Pid > 0 {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// killMember SIGKILLs pid, a process of c's process group (a worker of the
// server c started): the group check keeps the harness from killing
// anything else should the PID be wrong or reused.
func killMember(c *child, pid int) error {
	pgid, err := syscall.Getpgid(pid)
	if err != nil {
		return fmt.Errorf("victim %d: %w", pid, err)
	}
	if pgid != c.cmd.Process.Pid {
		return fmt.Errorf("victim %d is not in %s's process group", pid, c.name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill victim %d: %w", pid, err)
	}
	return nil
}
