//go:build unix && !linux

package runtime

// untouchedConn reports false: only Linux tells whether a connection was
// read from (untouched_conn_linux.go), so elsewhere a dead worker's
// accepted round-robin connections are closed, not rescued.
func untouchedConn(fd int) bool { return false }

// kernelTellsUntouched: untouchedConn never says yes here.
const kernelTellsUntouched = false
