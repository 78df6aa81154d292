//go:build !linux

package runtime

import "github.com/herd-go/herd/runtime/internal/link"

// newCallWaker returns nil: outside Linux (no eventfd) callers wait on
// their channels.
func newCallWaker(*link.Link) *callWaker { return nil }

// eventfdPost is never called: no callWaker is made here.
func eventfdPost(uintptr, *[8]byte) {}
