//go:build !unix

package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// errUnsupported is returned where herd needs unix sockets and signals.
var errUnsupported = errors.New("herd: worker processes are not supported on this platform")

func prepareCommand(cmd *exec.Cmd, cred *credential) {}

func startForker() {}

func startProcess(cmd *exec.Cmd) error { return errUnsupported }

func armParentDeath(primaryPID int) {}

func watchParentDeath(primaryPID int, onDeath func()) (stop func()) { return func() {} }

func exitStatus(ps *os.ProcessState) (code int, signal string) { return ps.ExitCode(), "" }

func signalName(s syscall.Signal) string { return s.String() }

// ParseSignal returns the signal named s ("SIGTERM", "TERM", "term" or "15").
func ParseSignal(s string) (syscall.Signal, error) { return parseSignal(s) }

func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return syscall.Signal(n), nil
	}
	switch strings.TrimPrefix(strings.ToUpper(s), "SIG") {
	case "KILL":
		return syscall.SIGKILL, nil
	case "TERM":
		return syscall.SIGTERM, nil
	case "INT":
		return syscall.SIGINT, nil
	}
	return 0, fmt.Errorf("herd: unknown signal %q", s)
}

func dupFD(fd int) (int, error) { return -1, errUnsupported }

func closeFD(fd int) {}
