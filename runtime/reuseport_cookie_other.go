//go:build unix && !linux

package runtime

import "os"

// socketCookie is unknown here: SchedReusePort is SchedShared outside
// Linux, so no reuseport handle asks.
func socketCookie(f *os.File) (uint64, bool) { return 0, false }
