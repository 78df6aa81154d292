//go:build !unix

package runtime

import "syscall"

// sigCont: no stopped processes to continue here (Process.Signal sends
// only Kill on Windows).
const sigCont = syscall.Signal(0x12)
