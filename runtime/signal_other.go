//go:build !unix

package runtime

import "os"

// raise ends the process; there are no worker processes on this platform.
func raise(sig os.Signal) { os.Exit(1) }
