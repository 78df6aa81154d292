//go:build linux

package nodump

import "syscall"

func init() {
	v, ok := syscall.Getenv(Env)
	if !ok {
		return
	}
	syscall.Unsetenv(Env)
	if v != "1" {
		return
	}
	// prctl(PR_SET_DUMPABLE, 0): from now on only a process with
	// CAP_SYS_PTRACE in this process's user namespace may ptrace it, take
	// its descriptors with pidfd_getfd or read its memory, and its /proc
	// files belong to root. It lasts until the next execve.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); errno != 0 {
		Err = errno
		return
	}
	Applied = true
}
