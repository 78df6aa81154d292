//go:build unix

package runtime

import (
	"os"
	"os/signal"
	"syscall"
)

// raise ends the process with sig's default action: the handler installed
// by Notify is removed (signal.Reset), and the Go runtime's own handler then
// restores the default disposition and re-sends the signal, so the exit
// status says the process died of sig.
func raise(sig os.Signal) {
	signal.Reset(sig)
	ss, ok := sig.(syscall.Signal)
	if !ok || syscall.Kill(os.Getpid(), ss) != nil {
		os.Exit(1)
	}
	select {} // the signal ends the process
}
