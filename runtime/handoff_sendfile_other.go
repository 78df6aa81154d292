//go:build unix && !linux

package runtime

import "io"

// sendFile reports r not handled: sendfile(2) differs between the BSDs,
// and a round-robin primary on them hands blocking descriptors, which
// workers serve as *net.TCPConn anyway (newHandoffConn).
func (c *handoffConn) sendFile(r io.Reader) (written int64, handled bool, err error) {
	return 0, false, nil
}
