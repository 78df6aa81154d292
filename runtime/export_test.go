//go:build unix

package runtime

// ForgetActivation forgets the descriptors this process took over as
// systemd's (takeActivation), for tests that set LISTEN_FDS in-process:
// the take-over is once per process, and later tests must not find
// descriptor numbers of an earlier test still declared systemd's.
func ForgetActivation() {
	activation.mu.Lock()
	activation.fds, activation.names = nil, nil
	activation.mu.Unlock()
}
