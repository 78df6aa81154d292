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

// TestRoundRobinRescuesWhatADeadWorkerDidNotRead: the primary keeps its
// copies of connections the worker accepted and did not report taken; when
// the worker's link ends they wait for its exit, then the ones nobody read
// go back to the handle's queue and the one the worker read from is
// closed. Fails if the copies are closed at the accept report, if they
// are rescued before the exit, or if the kernel's word is not asked.
func TestRoundRobinRescuesWhatADeadWorkerDidNotRead(t *testing.T) {
	base := herdtest.Take()
	defer herdtest.Check(t, base, 10*time.Second)

	ep, fb := rrTestEndpoint(t)
	var mu sync.Mutex
	var received []*os.File
	closeLinks := rrTestPeer(t, ep, fb, func(env *wire.Envelope, files []*os.File) error {
		if string(env.Procedure) != controlHandoffProcedure {
			closeFiles(files)
			return nil
		}
		mu.Lock()
		received = append(received, files...)
		mu.Unlock()
		return nil
	})
	defer closeLinks()
	defer func() {
		mu.Lock()
		closeFiles(received)
		mu.Unlock()
	}()

	h, addr := rrTestHandle(t, 8)
	defer h.close()
	w := &Worker{ep: ep, exited: make(chan struct{})}
	m := &membership{w: w, id: 1, h: h}
	h.join(m)
	rm := m.rr
	state := func() (queued, held, served int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, fd := range rm.served {
			if fd >= 0 {
				served++
			}
		}
		return h.queued(), len(rm.held), served
	}
	poll := func(what string, ok func(queued, held, served int) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			q, hd, s := state()
			if ok(q, hd, s) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: queued %d, held %d, served %d", what, q, hd, s)
			}
		}
	}

	const n = 4
	clients := dialClients(t, addr, n)
	defer clients()
	poll("the primary accepts every client", func(q, _, _ int) bool { return q == n })
	h.accepted(rm, &herdv1.AcceptedRequest{ListenerId: 1, Credit: n})
	poll("the worker receives them", func(_, _, _ int) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) == n
	})
	// Its server accepts all, takes (and reports) the first, reads from
	// the second without reporting it, leaves the others alone.
	h.accepted(rm, &herdv1.AcceptedRequest{ListenerId: 1, Accepted: n, Taken: []uint64{0}})
	if q, hd, s := state(); q != 0 || hd != 0 || s != n-1 {
		t.Fatalf("after the report: queued %d, held %d, served %d; want 0, 0, %d", q, hd, s, n-1)
	}
	mu.Lock()
	second := received[1]
	mu.Unlock()
	// The clients sent nothing: what the second's server does is write
	// to it (the kernel counts that as much as a read).
	if _, err := second.Write([]byte("220 hello\r\n")); err != nil {
		t.Fatal(err)
	}

	// The link ends; the worker has not exited yet: nothing moves.
	m.linkEnded = true
	h.leave(m, nil)
	if q, _, _ := state(); q != 0 {
		t.Fatalf("%d connections queued before the worker exited", q)
	}
	mu.Lock()
	closeFiles(received)
	received = nil
	mu.Unlock()
	close(w.exited)
	poll("the untouched ones are queued again once the worker has exited", func(q, _, _ int) bool { return q == n-2 })
}

// TestRoundRobinChecksWhatADeadWorkerDidNotReport: a worker on TCP
// reports what its server accepted lazily (lazyAcceptReports), so the
// primary cannot tell a handed connection its server took from one still
// queued. When its link ends, its held copies wait for its exit too, and
// only those nobody touched go back to the queue. Fails if held copies are
// queued again at once (as they were when every Accept reported first), or
// without the kernel's word.
func TestRoundRobinChecksWhatADeadWorkerDidNotReport(t *testing.T) {
	base := herdtest.Take()
	defer herdtest.Check(t, base, 10*time.Second)

	ep, fb := rrTestEndpoint(t)
	var mu sync.Mutex
	var received []*os.File
	closeLinks := rrTestPeer(t, ep, fb, func(env *wire.Envelope, files []*os.File) error {
		if string(env.Procedure) != controlHandoffProcedure {
			closeFiles(files)
			return nil
		}
		mu.Lock()
		received = append(received, files...)
		mu.Unlock()
		return nil
	})
	defer closeLinks()
	defer func() {
		mu.Lock()
		closeFiles(received)
		mu.Unlock()
	}()

	h, addr := rrTestHandle(t, 8)
	defer h.close()
	w := &Worker{ep: ep, exited: make(chan struct{})}
	m := &membership{w: w, id: 1, h: h}
	h.join(m)
	rm := m.rr
	queued := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.queued()
	}
	poll := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: queued %d", what, queued())
			}
		}
	}

	const n = 4
	clients := dialClients(t, addr, n)
	defer clients()
	poll("the primary accepts every client", func() bool { return queued() == n })
	h.accepted(rm, &herdv1.AcceptedRequest{ListenerId: 1, Credit: n})
	poll("the worker receives them", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) == n
	})
	// Its server accepted the first two and used the second; nothing was
	// reported yet.
	mu.Lock()
	second := received[1]
	mu.Unlock()
	if _, err := second.Write([]byte("220 hello\r\n")); err != nil {
		t.Fatal(err)
	}
	m.linkEnded = true
	h.leave(m, nil)
	if q := queued(); q != 0 {
		t.Fatalf("%d unreported connections queued again before the worker exited", q)
	}
	mu.Lock()
	closeFiles(received)
	received = nil
	mu.Unlock()
	close(w.exited)
	poll("the untouched ones are queued again once the worker has exited", func() bool { return queued() == n-1 })
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
