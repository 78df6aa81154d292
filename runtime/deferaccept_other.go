//go:build !linux

package runtime

// setDeferAccept does nothing here: TCP_DEFER_ACCEPT is Linux's (the BSDs'
// accept filters need a kernel module), and WithDeferAccept is documented
// as ignored elsewhere.
func setDeferAccept(fd int) error { return nil }
