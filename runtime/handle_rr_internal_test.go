//go:build linux || darwin

package runtime

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	"github.com/herd-go/herd/runtime/internal/link"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestRoundRobinReportsAreBounded: a worker's Accepted reports are
// untrusted. Whatever counts it sends, the primary closes only copies it
// handed to that worker, hands it at most the window unaccepted, bounds
// its credit, and puts returned connections back in its own queue.
func TestRoundRobinReportsAreBounded(t *testing.T) {
	base := herdtest.Take()
	defer herdtest.Check(t, base, 10*time.Second)

	ep, fb := rrTestEndpoint(t)
	// The worker's end counts the descriptors handed to it.
	var mu sync.Mutex
	handed := 0
	closeLinks := rrTestPeer(t, ep, fb, func(env *wire.Envelope, files []*os.File) error {
		if string(env.Procedure) != controlHandoffProcedure {
			closeFiles(files)
			return nil
		}
		var req herdv1.HandoffRequest
		if err := proto.Unmarshal(env.Payload, &req); err != nil || int(req.GetCount()) != len(files) {
			t.Errorf("hand-off %v: count %d, %d files", err, req.GetCount(), len(files))
		}
		mu.Lock()
		handed += len(files)
		mu.Unlock()
		closeFiles(files)
		return nil
	})
	defer closeLinks()

	const window = 4
	h, addr := rrTestHandle(t, window)
	m := &membership{w: &Worker{ep: ep}, id: 1, h: h}
	h.join(m)
	rm := m.rr

	const n = 10
	defer dialClients(t, addr, n)()
	state := func() (queued, held, credit, accepted int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.queued(), len(rm.held), rm.credit, rm.accepted
	}
	poll := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				q, hd, c, a := state()
				mu.Lock()
				got := handed
				mu.Unlock()
				t.Fatalf("%s: queued %d, held %d, credit %d, accepted %d, handed %d", what, q, hd, c, a, got)
			}
		}
	}
	poll("the primary accepts every client", func() bool { q, _, _, _ := state(); return q == n })

	// Absurd counts: nothing was handed, so nothing is closed or
	// returned; the credit is capped and the window bounds what is handed.
	h.accepted(rm, &herdv1.AcceptedRequest{ListenerId: 1, Accepted: 1 << 31, Returned: 1 << 31, Credit: 1<<32 - 1})
	if q, hd, c, a := state(); q != n-window || hd != window || c != maxCredit-window || a != 0 {
		t.Fatalf("after an absurd report: queued %d, held %d, credit %d, accepted %d", q, hd, c, a)
	}
	// Two accepted, one returned: the returned one goes back to the
	// queue, and once the worker's pause (it gave one back) is over, the
	// window refills.
	h.accepted(rm, &herdv1.AcceptedRequest{ListenerId: 1, Accepted: 2, Returned: 1})
	if _, hd, _, a := state(); hd > 1 || a != 2 {
		t.Fatalf("after 2 accepted, 1 returned: held %d, accepted %d", hd, a)
	}
	poll("the window refills", func() bool { q, hd, _, _ := state(); return q == n-window-2 && hd == window })
	poll("the worker's end receives every hand-off", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return handed == window+3
	})
	// The worker leaves: what it held goes back to the queue.
	h.leave(m, nil)
	if q, _, _, _ := state(); q != n-2 {
		t.Fatalf("after leave: queued %d, want %d", q, n-2)
	}
	h.close()
}

// TestRoundRobinEarlyReportCannotMisdirect: the primary hands the
// descriptor accept4 returned itself, without a duplicate. A worker that
// reports a connection accepted before the hand-off was even written (a
// lying worker) makes the primary close it; the next accept then gets the
// same descriptor number for another client's connection. The worker must
// still receive the connection it was handed, never the other client's.
func TestRoundRobinEarlyReportCannotMisdirect(t *testing.T) {
	base := herdtest.Take()
	defer herdtest.Check(t, base, 10*time.Second)

	ep, fb := rrTestEndpoint(t)
	// The worker's end stops reading at the first filler frame until gate
	// is closed, so that the hand-off queued behind the fillers cannot be
	// written before the worker's (lying) report.
	gate := make(chan struct{})
	var gateOnce sync.Once
	openGate := func() { gateOnce.Do(func() { close(gate) }) }
	handoffs := make(chan []*os.File, 4)
	closeLinks := rrTestPeer(t, ep, fb, func(env *wire.Envelope, files []*os.File) error {
		switch string(env.Procedure) {
		case "test.filler":
			<-gate
		case controlHandoffProcedure:
			handoffs <- append([]*os.File(nil), files...)
			return nil
		}
		closeFiles(files)
		return nil
	})
	defer func() {
		openGate()
		closeLinks()
		for {
			select {
			case fs := <-handoffs:
				closeFiles(fs)
			default:
				return
			}
		}
	}()

	h, addr := rrTestHandle(t, 4)
	defer h.close()
	m := &membership{w: &Worker{ep: ep}, id: 1, h: h}
	h.join(m)
	rm := m.rr
	state := func() (queued, held int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.queued(), len(rm.held)
	}
	poll := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				q, hd := state()
				t.Fatalf("%s: queued %d, held %d", what, q, hd)
			}
		}
	}

	// Fill the link: the worker's end takes the first filler and stops;
	// the socket (2 MiB of send buffer at most) takes two more. The rest
	// stays in the primary's write queue (4 MiB at most), and so does any
	// frame queued after them.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	filler := make([]byte, 1<<20-1<<10)
	for range 7 {
		if err := ep.link.SendBytes(ctx, &wire.Header{Procedure: "test.filler", Flags: wire.FlagSystem}, filler, nil); err != nil {
			t.Fatal(err)
		}
	}

	c1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	poll("the primary accepts the first client", func() bool { q, _ := state(); return q == 1 })
	h.accepted(rm, &herdv1.AcceptedRequest{ListenerId: 1, Credit: 1})
	if q, hd := state(); q != 0 || hd != 1 {
		t.Fatalf("after the credit: queued %d, held %d", q, hd)
	}
	select {
	case <-handoffs:
		t.Fatal("the hand-off was written before the report: the link was not full, the test tests nothing")
	default:
	}
	// The lie: accepted and taken, before the hand-off could be received.
	// The primary closes its descriptor; the next client's connection may
	// get its number.
	h.accepted(rm, &herdv1.AcceptedRequest{ListenerId: 1, Accepted: 1, Taken: []uint64{0}})
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	poll("the primary accepts the second client", func() bool { q, _ := state(); return q == 1 })

	openGate()
	var files []*os.File
	select {
	case files = <-handoffs:
	case <-time.After(10 * time.Second):
		t.Fatal("no hand-off reached the worker")
	}
	defer closeFiles(files)
	if len(files) != 1 {
		t.Fatalf("hand-off carries %d files", len(files))
	}
	c, err := net.FileConn(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := c.RemoteAddr().String(), c1.LocalAddr().String(); got != want {
		t.Fatalf("the worker received the connection from %s, it was handed the one from %s (the second client is %s)", got, want, c2.LocalAddr())
	}
}

// TestRoundRobinWithoutRescue: with WithHandoffWithoutRescue the primary
// keeps no copy of what it hands off (the link closes its descriptor once
// sent, so the worker's is the connection's last one), counts what is
// unreported against the window, and neither re-queues what a worker
// gives back nor what a leaving worker held.
func TestRoundRobinWithoutRescue(t *testing.T) {
	base := herdtest.Take()
	defer herdtest.Check(t, base, 10*time.Second)

	ep, fb := rrTestEndpoint(t)
	// The worker's end keeps what it is handed.
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
	defer func() {
		closeLinks()
		mu.Lock()
		closeFiles(received)
		mu.Unlock()
	}()

	const window = 4
	h, addr := rrTestHandle(t, window)
	defer h.close()
	h.mu.Lock()
	h.noRescue = true
	h.mu.Unlock()
	m := &membership{w: &Worker{ep: ep}, id: 1, h: h}
	h.join(m)
	rm := m.rr

	const n = 8
	clients := map[string]net.Conn{}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		clients[c.LocalAddr().String()] = c
	}
	state := func() (queued, held, sent int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.queued(), len(rm.held), rm.sent
	}
	poll := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				q, hd, s := state()
				t.Fatalf("%s: queued %d, held %d, sent %d", what, q, hd, s)
			}
		}
	}
	got := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(received)
	}
	poll("the primary accepts every client", func() bool { q, _, _ := state(); return q == n })

	// Credit for 6: the window (4) bounds what is handed and unreported,
	// and the primary holds no copy of it.
	h.accepted(rm, &herdv1.AcceptedRequest{ListenerId: 1, Credit: 6})
	poll("the worker's end receives the window", func() bool { return got() == window })
	if q, hd, s := state(); q != n-window || hd != 0 || s != window {
		t.Fatalf("after the hand-off: queued %d, held %d, sent %d; want %d, 0, %d", q, hd, s, n-window, window)
	}
	// The worker's descriptor is the connection's only one: when it is
	// closed, the client sees the end (with the primary's copy held, it
	// would wait until the primary closed it).
	mu.Lock()
	first := received[0]
	received = received[1:]
	mu.Unlock()
	sa, err := syscall.Getpeername(int(first.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	c := clients[sockaddrToAddr("tcp", sa).String()]
	if c == nil {
		t.Fatalf("no client at %v", sa)
	}
	first.Close()
	if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client of the closed connection read %d, %v; want EOF", n, err)
	}

	// One accepted, one given back: the window has room for two more (the
	// credit left, handed once the worker's pause is over), and nothing
	// goes back to the queue.
	h.accepted(rm, &herdv1.AcceptedRequest{ListenerId: 1, Accepted: 1, Returned: 1})
	if q, _, s := state(); q > n-window || s+q != n-2 {
		t.Fatalf("after 1 accepted, 1 returned: queued %d, sent %d; want at most %d queued, %d in all", q, s, n-window, n-2)
	}
	poll("the window refills after the pause", func() bool { q, _, s := state(); return q == n-window-2 && s == window })
	poll("the worker's end receives them", func() bool { return got() == window+2-1 })
	// The worker leaves: nothing goes back to the queue.
	h.leave(m, nil)
	if q, hd, s := state(); q != n-window-2 || hd != 0 || s != 0 {
		t.Fatalf("after leave: queued %d, held %d, sent %d; want %d, 0, 0", q, hd, s, n-window-2)
	}
}

// TestRoundRobinBusyWorkerGetsBatches: a worker that holds busyBatch or
// more connections handed and not reported is handed more only once it
// asked for busyBatch, in one message, not one per report; one that holds
// fewer is handed what it asks for at once.
func TestRoundRobinBusyWorkerGetsBatches(t *testing.T) {
	base := herdtest.Take()
	defer herdtest.Check(t, base, 10*time.Second)

	ep, fb := rrTestEndpoint(t)
	// The worker's end reports the size of every hand-off.
	sizes := make(chan int, 64)
	closeLinks := rrTestPeer(t, ep, fb, func(env *wire.Envelope, files []*os.File) error {
		if string(env.Procedure) == controlHandoffProcedure {
			sizes <- len(files)
		}
		closeFiles(files)
		return nil
	})
	defer closeLinks()

	h, addr := rrTestHandle(t, defaultHandoffWindow)
	m := &membership{w: &Worker{ep: ep}, id: 1, h: h}
	h.join(m)
	rm := m.rr

	const n = 16
	defer dialClients(t, addr, n)()
	state := func() (queued, held int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.queued(), len(rm.held)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if q, _ := state(); q == n {
			break
		}
		if time.Now().After(deadline) {
			q, _ := state()
			t.Fatalf("the primary accepted %d of %d clients", q, n)
		}
	}
	report := func(accepted, credit uint32, wantQueued, wantHeld int) {
		t.Helper()
		h.accepted(rm, &herdv1.AcceptedRequest{ListenerId: 1, Accepted: accepted, Credit: credit})
		if q, hd := state(); q != wantQueued || hd != wantHeld {
			t.Fatalf("after a report of %d accepted, %d credit: queued %d, held %d; want %d, %d", accepted, credit, q, hd, wantQueued, wantHeld)
		}
	}
	handoff := func(want int) {
		t.Helper()
		select {
		case got := <-sizes:
			if got != want {
				t.Fatalf("a hand-off of %d connections, want %d", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no hand-off of %d connections", want)
		}
	}
	report(0, 8, n-8, 8) // idle: what it asks for, at once
	handoff(8)
	// Busy (it holds 8): one report at a time asks for one more, and
	// nothing is handed until it asked for busyBatch.
	for i := 1; i < busyBatch; i++ {
		report(1, 1, n-8, 8-i)
	}
	report(1, 1, n-8-busyBatch, 8)
	handoff(busyBatch)
	// Running low (it holds fewer than busyBatch): at once again.
	report(8-busyBatch+1, 1, n-8-busyBatch-1, busyBatch)
	handoff(1)

	h.leave(m, nil)
	h.close()
	select {
	case got := <-sizes:
		t.Fatalf("an unexpected hand-off of %d connections", got)
	default:
	}
}

// rrTestEndpoint starts an endpoint on one end of a new link pair and
// returns it and the other end, for the worker's side of the test.
func rrTestEndpoint(t *testing.T) (*endpoint, *os.File) {
	t.Helper()
	fa, fb, err := link.Pair()
	if err != nil {
		t.Fatal(err)
	}
	ep := newEndpoint(endpointConfig{}.withDefaults(), NewMux(), NewMux(), nil, context.Background(), func(Code, string, error) {})
	if err := ep.start(fa); err != nil {
		fb.Close()
		t.Fatal(err)
	}
	return ep, fb
}

// rrTestPeer runs the worker's end of ep's link on fb with handler h, and
// returns the function that closes both ends and waits for them.
func rrTestPeer(t *testing.T, ep *endpoint, fb *os.File, h link.Handler) (closeLinks func()) {
	t.Helper()
	peer, err := link.New(fb, h)
	if err != nil {
		ep.link.Close()
		<-ep.closed
		t.Fatal(err)
	}
	return func() {
		peer.Close()
		<-peer.Done()
		ep.link.Close()
		<-ep.closed
	}
}

// rrTestHandle makes a round-robin handle with the hand-off window given
// on a new loopback listener, and returns it and its address.
func rrTestHandle(t *testing.T, window int) (*rrHandle, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	h, err := newRRHandle(handleBase{network: "tcp", address: addr}, ln, window, 64, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return h, addr
}

// dialClients connects n clients to addr, and returns the function that
// closes them.
func dialClients(t *testing.T, addr string, n int) (closeAll func()) {
	t.Helper()
	var clients []net.Conn
	closeAll = func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			closeAll()
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	return closeAll
}
