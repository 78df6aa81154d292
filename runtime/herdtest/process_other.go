//go:build !unix

package herdtest

import (
	"os/exec"
	"syscall"
)

// setGroup does nothing: process groups are a Unix notion.
func setGroup(cmd *exec.Cmd) {}

func killGroup(pgid int) {}

// SignalGroup fails the test: process groups are a Unix notion.
func (p *Process) SignalGroup(sig syscall.Signal) {
	p.t.Helper()
	p.t.Fatalf("herdtest: %s: process groups need Unix", p.role)
}
