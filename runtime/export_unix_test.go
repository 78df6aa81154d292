//go:build unix

package runtime

// RoundRobinState reports, summed over w's round-robin listeners, what the
// primary's handles hold for w: connections handed and not reported
// accepted (its copies; with WithHandoffWithoutRescue, the count), credit (connections w asked for and was not handed yet), and
// connections w reported accepted. For tests.
func RoundRobinState(w *Worker) (held, credit, accepted int) {
	for _, m := range rrMemberships(w) {
		h := m.h.(*rrHandle)
		h.mu.Lock()
		held += len(m.rr.held) + m.rr.sent
		credit += m.rr.credit
		accepted += m.rr.accepted
		h.mu.Unlock()
	}
	return held, credit, accepted
}

// rrMemberships returns w's round-robin memberships.
func rrMemberships(w *Worker) []*membership {
	pt := w.primary.ports
	pt.mu.Lock()
	defer pt.mu.Unlock()
	var ms []*membership
	for _, m := range pt.byWorker[w] {
		if m.rr != nil {
			ms = append(ms, m)
		}
	}
	return ms
}

// RoundRobinServed reports how many copies of connections w's servers
// accepted and did not report taken the primary's round-robin handles
// hold for w. For tests.
func RoundRobinServed(w *Worker) int {
	n := 0
	for _, m := range rrMemberships(w) {
		h := m.h.(*rrHandle)
		h.mu.Lock()
		for _, fd := range m.rr.served {
			if fd >= 0 {
				n++
			}
		}
		h.mu.Unlock()
	}
	return n
}
