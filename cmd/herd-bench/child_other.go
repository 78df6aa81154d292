//go:build !unix

package main

import "os/exec"

// setProcessGroup does nothing where there are no process groups.
func setProcessGroup(cmd *exec.Cmd) {}

// killProcessGroup does nothing where there are no process groups.
func killProcessGroup(cmd *exec.Cmd) {}

// killMember cannot kill a worker here.
func killMember(c *child, pid int) error { return errUnsupported }
