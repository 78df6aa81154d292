//go:build unix

package runtime

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// exitStatus decodes a finished process's status: the exit code (-1 when a
// signal ended it) and the signal's name ("" on a normal exit).
func exitStatus(ps *os.ProcessState) (code int, signal string) {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.ExitCode(), ""
	}
	if ws.Signaled() {
		return -1, signalName(ws.Signal())
	}
	return ws.ExitStatus(), ""
}

// signalName returns "SIGKILL" for syscall.SIGKILL.
func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return s.String()
}

// ParseSignal returns the signal named s ("SIGTERM", "TERM", "term" or "15").
func ParseSignal(s string) (syscall.Signal, error) { return parseSignal(s) }

func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("herd: unknown signal %q", s)
}

// dupFD duplicates fd with close-on-exec set atomically.
func dupFD(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

func closeFD(fd int) { unix.Close(fd) }
