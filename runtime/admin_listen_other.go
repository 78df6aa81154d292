//go:build !unix

package runtime

import (
	"net"
	"os"
)

// adminSocketFile has nothing to remove here.
type adminSocketFile struct{}

func (*adminSocketFile) remove() {}

// listenAdmin returns ErrAdminUnsupported: herd links need unix sockets.
func listenAdmin(string, os.FileMode) (*net.UnixListener, *adminSocketFile, error) {
	return nil, nil, ErrAdminUnsupported
}
