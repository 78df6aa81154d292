//go:build !unix

package herdhttp

import "net"

// pending reports whether c's socket holds bytes not read yet; without
// MSG_PEEK here it says no, and the idle grace alone protects a request
// that arrives as the drain closes its connection.
func pending(c net.Conn) bool { return false }
