//go:build !linux

package runtime

import "log/slog"

// startReaper does nothing outside Linux: there is no child subreaper, and
// herd does not run as a container's init there.
func startReaper(log *slog.Logger, subreaper bool) {
	if subreaper {
		log.Warn("herd: WithSubreaper ignored: child subreapers exist only on Linux")
	}
}

func forgetChild(pid int) {}
