//go:build linux

package runtime

import (
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestRoundRobinTakenReportsAreBounded: the places a worker reports taken
// are untrusted. The primary closes only copies it holds for that worker,
// each once, and holds at most maxServed places' worth, closing the oldest
// beyond.
func TestRoundRobinTakenReportsAreBounded(t *testing.T) {
	m := &rrMember{}
	m.served = []int{10, 11, 12, 13}
	got := m.takenLocked([]uint64{1, 1, 4, 99, 1 << 63}, nil)
	if !slices.Equal(got, []int{11}) || !slices.Equal(m.served, []int{10, -1, 12, 13}) || m.servedBase != 0 {
		t.Fatalf("after taken 1 (twice) and three places never accepted: closing %v, served %v from %d", got, m.served, m.servedBase)
	}
	got = m.takenLocked([]uint64{0}, nil)
	if !slices.Equal(got, []int{10}) || !slices.Equal(m.served, []int{12, 13}) || m.servedBase != 2 {
		t.Fatalf("after taken 0: closing %v, served %v from %d", got, m.served, m.servedBase)
	}
	if got = m.takenLocked([]uint64{0, 1}, nil); len(got) != 0 {
		t.Fatalf("places closed already closed again: %v", got)
	}
	// A worker that never reports: the oldest copies go past maxServed.
	for i := range maxServed {
		m.served = append(m.served, 100+i)
	}
	got = m.takenLocked(nil, nil)
	if !slices.Equal(got, []int{12, 13}) || len(m.served) != maxServed || m.servedBase != 4 {
		t.Fatalf("past maxServed: closing %v, %d served from %d", got, len(m.served), m.servedBase)
	}
	if got := m.servedCopies(); len(got) != maxServed || got[0] != 100 || m.served != nil {
		t.Fatalf("servedCopies: %d, from %v", len(got), got[:1])
	}
}

// rescueFixture is a round-robin handle with one member whose link's
// peer keeps the descriptors it is handed, as a worker would: what the
// primary does with its copies when that worker dies.
type rescueFixture struct {
	t  *testing.T
	h  *rrHandle
	m  *membership
	rm *rrMember
	w  *Worker

	mu       sync.Mutex
	received []*os.File
}

// newRescueFixture builds the fixture; the test's cleanups close it all
// and then check for leaks.
func newRescueFixture(t *testing.T) (f *rescueFixture, addr string) {
	base := herdtest.Take()
	t.Cleanup(func() { herdtest.Check(t, base, 10*time.Second) }) // last
	f = &rescueFixture{t: t}
	ep, fb := rrTestEndpoint(t)
	closeLinks := rrTestPeer(t, ep, fb, func(env *wire.Envelope, files []*os.File) error {
		if string(env.Procedure) != controlHandoffProcedure {
			closeFiles(files)
			return nil
		}
		f.mu.Lock()
		f.received = append(f.received, files...)
		f.mu.Unlock()
		return nil
	})
	t.Cleanup(closeLinks)
	t.Cleanup(f.workerExits)
	f.h, addr = rrTestHandle(t, 8)
	t.Cleanup(f.h.close)
	f.w = &Worker{ep: ep, exited: make(chan struct{})}
	f.m = &membership{w: f.w, id: 1, h: f.h}
	f.h.join(f.m)
	f.rm = f.m.rr
	return f, addr
}

// state is the handle's queue, the member's held copies and its served
// copies still open.
func (f *rescueFixture) state() (queued, held, served int) {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	for _, fd := range f.rm.served {
		if fd >= 0 {
			served++
		}
	}
	return f.h.queued(), len(f.rm.held), served
}

// poll waits until ok holds for the state.
func (f *rescueFixture) poll(what string, ok func(queued, held, served int) bool) {
	f.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		q, hd, s := f.state()
		if ok(q, hd, s) {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: queued %d, held %d, served %d", what, q, hd, s)
		}
	}
}

// handOff has the primary hand n queued connections to the member and
// waits until the worker side has them all; it returns them.
func (f *rescueFixture) handOff(n int) []*os.File {
	f.t.Helper()
	f.poll("the primary accepts every client", func(q, _, _ int) bool { return q == n })
	f.h.accepted(f.rm, &herdv1.AcceptedRequest{ListenerId: 1, Credit: uint32(n)})
	f.poll("the worker receives them", func(_, _, _ int) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.received) == n
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.received)
}

// linkEnds has the member leave as when its worker's link ends.
func (f *rescueFixture) linkEnds() {
	f.m.linkEnded = true
	f.h.leave(f.m, nil)
}

// workerExits closes the worker's descriptors, as its death does.
func (f *rescueFixture) workerExits() {
	f.mu.Lock()
	closeFiles(f.received)
	f.received = nil
	f.mu.Unlock()
}

// TestRoundRobinRescuesWhatADeadWorkerDidNotRead: the primary keeps its
// copies of connections the worker accepted and did not report taken; when
// the worker's link ends they wait for its exit, then the ones nobody read
// go back to the handle's queue and the one the worker read from is
// closed. Fails if the copies are closed at the accept report, if they
// are rescued before the exit, or if the kernel's word is not asked.
func TestRoundRobinRescuesWhatADeadWorkerDidNotRead(t *testing.T) {
	f, addr := newRescueFixture(t)
	const n = 4
	clients := dialClients(t, addr, n)
	defer clients()
	received := f.handOff(n)
	// Its server accepts all, takes (and reports) the first, reads from
	// the second without reporting it, leaves the others alone.
	f.h.accepted(f.rm, &herdv1.AcceptedRequest{ListenerId: 1, Accepted: n, Taken: []uint64{0}})
	if q, hd, s := f.state(); q != 0 || hd != 0 || s != n-1 {
		t.Fatalf("after the report: queued %d, held %d, served %d; want 0, 0, %d", q, hd, s, n-1)
	}
	// The clients sent nothing: what the second's server does is write
	// to it (the kernel counts that as much as a read).
	if _, err := received[1].Write([]byte("220 hello\r\n")); err != nil {
		t.Fatal(err)
	}

	// The link ends; the worker has not exited yet: nothing moves.
	f.linkEnds()
	if q, _, _ := f.state(); q != 0 {
		t.Fatalf("%d connections queued before the worker exited", q)
	}
	f.workerExits()
	close(f.w.exited)
	f.poll("the untouched ones are queued again once the worker has exited", func(q, _, _ int) bool { return q == n-2 })
}

// TestRoundRobinChecksWhatADeadWorkerDidNotReport: a worker on TCP
// reports what its server accepted lazily (lazyAcceptReports), so the
// primary cannot tell a handed connection its server took without a report
// from one still queued. When its link ends, its held copies wait for its
// exit too, and only those nobody touched go back to the queue. Fails if
// held copies are queued again at once (as they were when every Accept
// reported first), or without the kernel's word.
func TestRoundRobinChecksWhatADeadWorkerDidNotReport(t *testing.T) {
	f, addr := newRescueFixture(t)
	const n = 4
	clients := dialClients(t, addr, n)
	defer clients()
	received := f.handOff(n)
	// Its server accepted the first two and used the second; nothing was
	// reported yet.
	if _, err := received[1].Write([]byte("220 hello\r\n")); err != nil {
		t.Fatal(err)
	}
	f.linkEnds()
	if q, _, _ := f.state(); q != 0 {
		t.Fatalf("%d unreported connections queued again before the worker exited", q)
	}
	f.workerExits()
	close(f.w.exited)
	f.poll("the untouched ones are queued again once the worker has exited", func(q, _, _ int) bool { return q == n-1 })
}

// TestRoundRobinLazyReportsGatherCredit: with lazy reports an Accept that
// leaves the listener well supplied reports nothing; the reports go once
// the credit asked for reaches busyBatch (what the primary hands a busy
// worker at once) or the listener runs low. Fails if every Accept reports
// or if a listener about to run dry waits for the flush timer.
func TestRoundRobinLazyReportsGatherCredit(t *testing.T) {
	l := newRRListener(&listenEntry{})
	l.lazy = true
	l.tshut = true // no flush timer: nothing to report to
	l.queue = make([]*os.File, 12)
	l.credit = 4
	accept := func(ahead int) bool {
		t.Helper()
		l.mu.Lock()
		l.head++
		ask := l.askLocked(ahead)
		l.mu.Unlock()
		if ask != 1 {
			t.Fatalf("asked for %d, want 1", ask)
		}
		return l.pendingAccept(ask)
	}
	for i := 1; i < busyBatch; i++ {
		if accept(16) {
			t.Fatalf("accept %d (credit %d asked) reports at once", i, i)
		}
	}
	if !accept(16) {
		t.Fatalf("credit %d asked is not reported", busyBatch)
	}
	var req herdv1.AcceptedRequest
	l.withPending(&req)
	if req.Accepted != busyBatch || req.Credit != busyBatch || l.pendAccepted != 0 || l.pendCredit != 0 {
		t.Fatalf("report: %d accepted, %d credit; left %d, %d", req.Accepted, req.Credit, l.pendAccepted, l.pendCredit)
	}
	// Running low: two queued, one credit the primary knows of.
	l.queue, l.head, l.credit = make([]*os.File, 3), 0, 1
	if !accept(4) {
		t.Fatal("a listener running low waits for the flush timer")
	}
}
