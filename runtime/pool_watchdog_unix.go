//go:build unix

package runtime

import "syscall"

// sigCont continues a stopped worker so that it can write its dump.
const sigCont = syscall.SIGCONT
