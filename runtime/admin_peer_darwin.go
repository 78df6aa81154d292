package runtime

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCredentials reads who connected c: LOCAL_PEERCRED (what getpeereid(3)
// reads) for the user, LOCAL_PEERPID for the process.
func peerCredentials(c *net.UnixConn) (adminPeer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return adminPeer{}, err
	}
	var cred *unix.Xucred
	pid := -1
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		if p, err := unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID); err == nil {
			pid = p
		}
	}); err != nil {
		return adminPeer{}, err
	}
	if gerr != nil {
		return adminPeer{}, gerr
	}
	return adminPeer{uid: int(cred.Uid), pid: pid}, nil
}

// parentPID is not looked up here: only the peer itself is compared with
// the workers.
func parentPID(int) (int, bool) { return 0, false }
