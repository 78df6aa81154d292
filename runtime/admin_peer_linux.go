package runtime

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCredentials reads who connected c: SO_PEERCRED, the user and process
// of the peer as they were when it called connect(2).
func peerCredentials(c *net.UnixConn) (adminPeer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return adminPeer{}, err
	}
	var cred *unix.Ucred
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return adminPeer{}, err
	}
	if gerr != nil {
		return adminPeer{}, gerr
	}
	return adminPeer{uid: int(cred.Uid), pid: int(cred.Pid)}, nil
}

// parentPID is pid's parent process, from /proc/PID/stat.
func parentPID(pid int) (int, bool) {
	st, err := readProcStat(pid) // proc_stat.go
	return st.ppid, err == nil
}
