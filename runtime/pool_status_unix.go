//go:build unix

package runtime

// acceptedBy counts the connections w's servers accepted on its round-robin
// listeners.
func (pt *portTable) acceptedBy(w *Worker) uint64 {
	pt.mu.Lock()
	ms := make([]*membership, 0, len(pt.byWorker[w]))
	for _, m := range pt.byWorker[w] {
		ms = append(ms, m)
	}
	pt.mu.Unlock()
	var n uint64
	for _, m := range ms {
		h, ok := m.h.(*rrHandle)
		if !ok || m.rr == nil {
			continue
		}
		h.mu.Lock()
		n += uint64(m.rr.accepted)
		h.mu.Unlock()
	}
	return n
}
