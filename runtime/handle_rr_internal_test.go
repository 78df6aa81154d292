//go:build linux || darwin

package runtime

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
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

	fa, fb, err := link.Pair()
	if err != nil {
		t.Fatal(err)
	}
	ep := newEndpoint(endpointConfig{}.withDefaults(), NewMux(), NewMux(), nil, context.Background(), func(Code, string, error) {})
	if err := ep.start(fa); err != nil {
		t.Fatal(err)
	}
	// The worker's end counts the descriptors handed to it.
	var mu sync.Mutex
	handed := 0
	peer, err := link.New(fb, func(env *wire.Envelope, files []*os.File) error {
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
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		peer.Close()
		<-peer.Done()
		ep.link.Close()
		<-ep.closed
	}()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	const window = 4
	h, err := newRRHandle(handleBase{network: "tcp", address: addr}, ln, window, 64, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	m := &membership{w: &Worker{ep: ep}, id: 1, h: h}
	h.join(m)
	rm := m.rr

	const n = 10
	var clients []net.Conn
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
		clients = append(clients, c)
	}
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
