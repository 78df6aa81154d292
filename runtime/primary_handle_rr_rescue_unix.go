//go:build unix

package runtime

// What a dead worker's accepted connections become with SchedRoundRobin.
//
// A net/http server accepts eagerly: its accept loop starts a goroutine
// per connection and calls Accept again at once, so on a busy machine a
// worker's server can hold connections whose goroutines have not run yet.
// Those used to be lost with the worker: its Accept had told the primary
// it took them, and the primary closed its copies. Now the primary keeps
// its copy of each accepted TCP connection until the worker reports that
// its server used it (rrListener.noteTaken), and when the worker has died
// it asks the kernel, for each connection still held, whether anybody read
// from it or wrote to it (untouchedConn). One nobody touched is as good as
// a connection never handed off: its request, if it arrived, is still all
// in the socket's receive queue, and no byte of an answer left. It goes to
// another worker; the others are closed (their clients see the reset
// they would have seen anyway).
//
// The check waits for the process's exit, not the end of its link: a
// worker whose link ended may still run (it closed its end, or it is
// being shut down) and read a connection after the primary looked.

// rescueAfterExit waits until w's process has exited, then queues fds, w's
// accepted connections it had not reported taken, that nobody touched for
// another worker and closes the rest. With the handle closed meanwhile it
// closes them all.
func (h *rrHandle) rescueAfterExit(w *Worker, fds []int) {
	go func() {
		select {
		case <-w.exited:
		case <-h.done:
			closeRawFDs(fds)
			return
		}
		var keep []int
		for _, fd := range fds {
			if untouchedConn(fd) {
				keep = append(keep, fd)
			} else {
				closeHandoffFD(fd)
			}
		}
		if len(keep) == 0 {
			return
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			closeRawFDs(keep)
			return
		}
		// Ahead of what waits: they were accepted first.
		h.unpopLocked(keep)
		h.dispatchLocked()
		h.mu.Unlock()
		h.log.Debug("herd: rescued a dead worker's accepted connections", "handle", h.String(), "worker", w.id, "rescued", len(keep), "closed", len(fds)-len(keep))
	}()
}
