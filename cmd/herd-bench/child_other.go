//go:build !unix

package main

import "os/exec"

// setProcessGroup does nothing where there are no process groups.
func setProcessGroup(cmd *exec.Cmd) {}

// killProcessGroup does nothing where there are no process groups.
func killProcessGroup(cmd *exec.Cmd) {}
