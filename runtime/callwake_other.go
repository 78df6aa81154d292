//go:build !linux

package runtime

// newCallWaker returns nil: outside Linux (no eventfd) callers wait on
// their channels.
func newCallWaker() *callWaker { return nil }

// eventfdPost is never called: no callWaker is made here.
func eventfdPost(uintptr, *[8]byte) {}
