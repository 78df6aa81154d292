//go:build linux || darwin

package link

// sendmsgNow is sendmsg without waiting: one attempt (EINTR aside) to
// write a prefix of p with rec's descriptors attached. It returns how much
// was written; rec.sent reports whether the descriptors went (when not,
// and the error is nil, the socket was full).
func (l *Link) sendmsgNow(p []byte, rec *fdFrame) (int, error) {
	l.wbuf, l.wrec, l.wn, l.werr = p, rec, 0, nil
	err := l.rc.Write(l.sendmsgNowFn)
	l.wbuf, l.wrec = nil, nil
	return l.wn, l.writeError(err, l.werr, "sendmsg")
}

// sendmsgNowCallback is the RawConn.Write callback of sendmsgNow: it never
// asks to wait.
func (l *Link) sendmsgNowCallback(fd uintptr) bool {
	l.sendmsgCallback(fd)
	return true
}
