//go:build !unix

package runtime

// takeActivation does nothing without unix descriptors: systemd's socket
// activation is Linux's.
func takeActivation() {}
