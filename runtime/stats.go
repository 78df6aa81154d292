package runtime

// LinkStats are the counters of one primary-worker link, for metrics:
// Worker.Stats on the primary's side, Self.Stats on the worker's. The
// counters count since the link started; each is read atomically, but not
// all at the same instant. They are cheap to read (no lock held across the
// link), so a metrics scrape may read them as often as it likes.
type LinkStats struct {
	// FramesSent counts frames completely written to the socket;
	// FramesReceived counts frames read and decoded.
	FramesSent, FramesReceived uint64
	// BytesSent and BytesReceived count bytes through the socket, length
	// prefixes included.
	BytesSent, BytesReceived uint64
	// Writes counts write(2) and sendmsg(2) calls, Reads recvmsg(2) calls
	// (those that found the socket full or empty included). FramesSent
	// divided by Writes is how well writes are batched.
	Writes, Reads uint64
	// MailboxUser and MailboxSystem are how many received messages (and
	// local events) wait in this end's mailbox for its handlers, in the
	// user lane and in the control lane (the runtime's own requests);
	// MailboxCapacity is how many user
	// messages the peer may have queued here (WithMailboxCapacity, the
	// credit window: beyond it the peer's calls wait).
	MailboxUser, MailboxSystem, MailboxCapacity int
	// PendingCalls is how many of this end's calls wait for a response.
	PendingCalls int
}

// stats reads the endpoint's counters; the zero LinkStats before the link
// started.
func (ep *endpoint) stats() LinkStats {
	if ep == nil {
		return LinkStats{}
	}
	var s LinkStats
	select {
	case <-ep.ready:
		ls := ep.link.Stats()
		s.FramesSent, s.FramesReceived = ls.FramesSent, ls.FramesReceived
		s.BytesSent, s.BytesReceived = ls.BytesSent, ls.BytesReceived
		s.Writes, s.Reads = ls.Writes, ls.Reads
	default:
	}
	s.MailboxUser = ep.box.Len()
	s.MailboxSystem = ep.ctl.Len()                  // the control lane (control.go)
	s.MailboxCapacity = ep.box.Cap() - eventReserve // the lane holds the window plus room for events
	ep.pendMu.Lock()
	s.PendingCalls = len(ep.pending)
	ep.pendMu.Unlock()
	return s
}

// Stats returns the counters of the link to this worker, seen from the
// primary's side.
func (w *Worker) Stats() LinkStats { return w.ep.stats() }

// Stats returns the counters of the link to the primary, seen from the
// worker's side; the zero LinkStats before Start.
func (s *Self) Stats() LinkStats { return s.ep.stats() }
