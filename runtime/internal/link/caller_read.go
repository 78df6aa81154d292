package link

// A caller that reads its own reply (ReadUntil).
//
// A goroutine that has sent a request and waits for the reply would
// normally park, and the reply would reach it in three steps: the
// netpoller wakes a thread for the reader goroutine, the reader reads and
// dispatches the reply, and the dispatch wakes the caller. On a machine
// whose idle CPUs sleep deeply (a virtual machine's halt-polling, say), the
// first step alone, a sleeping CPU's wake-up, is most of the round trip:
// measured on a 2-vCPU VM (testdata/spinpoll), a 16-byte round trip
// between two processes took 29-40 us when both sides blocked in read(2),
// and 6.3 us when the caller instead tried a non-blocking read in a loop
// for up to 20 us before it slept, for less CPU per round trip (10.1
// against 13-17 us: the spin replaces the wake-up's own cost).
//
// A caller cannot spin on the scheduler (a Go thread that is idle waits in
// a blocking epoll_wait, so yielding never looks at the socket): it has to
// read the socket itself. So while the reader goroutine waits for the
// socket (every whole frame read is dispatched), a caller may take the
// reader role: it reads and dispatches frames on its own goroutine, its
// reply and whatever else arrives, until its reply is in, and hands the
// role back. The reader role is Link.rtok:
//
//   - rtBusy: the reader goroutine reads or dispatches. Only it moves the
//     state from here, to rtIdle, when a read finds nothing.
//   - rtIdle: the reader goroutine waits for the socket. A caller may take
//     the role (rtCaller); the reader goroutine takes it back (rtBusy) when
//     the socket becomes readable.
//   - rtCaller: a caller reads. The reader goroutine, woken by the
//     netpoller meanwhile, adds rtEdge and waits again: the caller may have
//     left bytes unread that no new readiness will announce (the netpoller
//     is edge-triggered), so before it gives the role back, a caller that
//     finds rtEdge reads until the socket is empty. It gives the role back
//     only from a state without rtEdge, so every readiness after its last
//     read wakes a reader goroutine that finds the role free.
//
// Frames dispatched by a caller see CallerReading true: their handler runs
// on a goroutine that is waiting for its reply and must not block (no
// Release: the handler cannot hand the reading on, as the caller is not
// the reader goroutine).
const (
	rtBusy   uint32 = 0
	rtIdle   uint32 = 1
	rtCaller uint32 = 2
	rtEdge   uint32 = 4
)

// CallerReading reports whether the frame being dispatched is dispatched
// by a caller reading for its reply (ReadUntil), not by the reader
// goroutine. Called by a handler; one atomic load.
func (l *Link) CallerReading() bool {
	return l.rtok.Load()&rtCaller != 0
}
