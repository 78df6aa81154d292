//go:build !linux

package runtime

// newCallWaker returns nil: outside Linux (no eventfd) callers wait on
// their channels.
func newCallWaker() *callWaker { return nil }
