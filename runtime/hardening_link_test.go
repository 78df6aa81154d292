//go:build linux

package runtime_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// fdFloodWorker is a hostile worker (issue 9, finding 4): on its raw link
// it sends 40 frames that claim no descriptor, each with 250 descriptors
// attached, then writes "sent N" (how many sendmsg calls succeeded) to
// descriptor 4 and waits for the primary to close the link.
func fdFloodWorker() int {
	null, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 20
	}
	frame, err := wire.AppendFrameBytes(nil, &wire.Header{Procedure: "/herd.v1.ControlService/Listening"}, nil, 0)
	if err != nil {
		return 21
	}
	fds := make([]int, 250)
	for i := range fds {
		fds[i] = null
	}
	sent := 0
	for range 40 {
		if _, err := unix.SendmsgN(3, frame, unix.UnixRights(fds...), nil, unix.MSG_NOSIGNAL); err == nil {
			sent++
		}
	}
	fmt.Fprintf(os.NewFile(4, "report"), "sent %d\n", sent)
	buf := make([]byte, 4096)
	for {
		if n, err := unix.Read(3, buf); n <= 0 && err != unix.EINTR {
			return 0
		}
	}
}

// countOpenFDs counts this process's open descriptors.
func countOpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // the directory being read
}

// TestFDFloodFromWorker: a worker that floods the primary with descriptors
// no frame claims loses its link at the first such frame, with an error
// event; the primary holds none of them (measured while the worker is still
// alive) and its other worker keeps working.
func TestFDFloodFromWorker(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := newCluster(t)
	good := c.fork("idle")
	c.rec.waitFor(fmt.Sprintf("online %d", good.ID()))
	c.p.Setup(runtime.WithExtraFiles(w)) // for the flooding worker only
	before := countOpenFDs()

	// The peak, sampled, for the figure in the log.
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if n := int64(countOpenFDs()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	bad := c.fork("fdflood")
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("flooding worker: %v", err)
	}
	ev := c.rec.waitFor(fmt.Sprintf("error %d ", bad.ID()))
	held := countOpenFDs() // the flooding worker is alive: its link would still be up without the fix
	close(stop)
	wg.Wait()
	t.Logf("primary descriptors: %d before, peak %d during the flood, %d after it (%s of 40 x 250)", before, peak.Load(), held, strings.TrimSpace(line))
	if !strings.Contains(ev, "invalid_argument") || !strings.Contains(ev, "no frame claims") {
		t.Errorf("error event %q, want invalid_argument and the unclaimed descriptors", ev)
	}
	// The worker's own process adds a few descriptors in the primary
	// (its pidfd, its exit pipe); none of the 10,000 sent.
	if held > before+8 {
		t.Errorf("the primary holds %d descriptors, %d before the flood", held, before)
	}
	res, err := testv1herd.NewTestServiceClient(good).Echo(context.Background(), &testv1.EchoRequest{Message: "hi"})
	if want := fmt.Sprintf("worker %d:hi", good.ID()); err != nil || res.GetMessage() != want {
		t.Errorf("call to the other worker: %v %v, want %q", res, err, want)
	}
	c.waitExit(bad)
}

// holdConns is the holdconns worker's TestService: Listen accepts in the
// background, writing "w<ID>" on each connection and holding it open;
// Inspect counts the connections it holds.
type holdConns struct {
	*testService
	mu   sync.Mutex
	held []net.Conn
}

func (h *holdConns) Listen(ctx context.Context, req *testv1.ListenRequest) (*testv1.ListenResponse, error) {
	opts, err := listenOptions(req)
	if err != nil {
		return nil, err
	}
	ln, err := runtime.Listen(ctx, req.GetNetwork(), req.GetAddress(), opts...)
	if err != nil {
		return nil, err
	}
	self := h.self
	self.OnDisconnect(func(context.Context) error {
		ln.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.held {
			c.Close()
		}
		h.held = nil
		return nil
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Held before the greeting: a client that has read it is
			// counted by Inspect.
			h.mu.Lock()
			h.held = append(h.held, c)
			h.mu.Unlock()
			c.Write([]byte("w" + strconv.FormatUint(self.ID(), 10) + "\n"))
		}
	}()
	return &testv1.ListenResponse{Address: ln.Addr().String(), Policy: policyName(ln)}, nil
}

func (h *holdConns) count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(len(h.held))
}

// holdConnsWorker serves holdConns. Its error events go to the primary as
// reports "error <code> <procedure> <message>".
func holdConnsWorker() int {
	var self *runtime.Self
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second), runtime.WithErrorHandler(func(ev *herdv1.ErrorEvent) {
		msg := fmt.Sprintf("error %s %s %s", runtime.Code(ev.GetCode()), ev.GetProcedure(), ev.GetMessage())
		_ = self.Send(context.Background(), testv1herd.TestServiceReportProcedure, &testv1.ReportRequest{Message: msg})
	}))
	if err != nil {
		return 10
	}
	h := &holdConns{}
	h.testService = &testService{self: self, selfPeer: testv1herd.NewTestServiceClient(self), connections: h.count}
	if err := testv1herd.RegisterTestServiceHandler(self, h); err != nil {
		return 11
	}
	if err := self.Start(context.Background()); err != nil {
		return 12
	}
	<-self.Done()
	select {}
}

// holdListen makes a holdconns worker listen (round robin on 127.0.0.1:0)
// and returns the address.
func holdListen(t *testing.T, w *runtime.Worker) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := testv1herd.NewTestServiceClient(w).Listen(ctx, &testv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", Policy: "rr"})
	if err != nil {
		t.Fatalf("worker %d listen: %v", w.ID(), err)
	}
	return res.GetAddress()
}

// heldConns returns how many connections a holdconns worker holds.
func heldConns(t *testing.T, w *runtime.Worker) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := testv1herd.NewTestServiceClient(w).Inspect(ctx, &testv1.InspectRequest{})
	if err != nil {
		t.Fatalf("worker %d inspect: %v", w.ID(), err)
	}
	return res.GetConnections()
}

// TestWorkerAtDescriptorLimit is finding 7 of issue 9: a worker at its
// descriptor limit (RLIMIT_NOFILE 64) is handed more connections than it
// can hold. The kernel truncates the hand-offs' descriptors (MSG_CTRUNC);
// the worker must refuse what it cannot take, so that the primary gives
// those connections to the other worker, keep its link, say why in an
// error event, and, disconnected, exit cleanly.
func TestWorkerAtDescriptorLimit(t *testing.T) {
	const conns = 200
	c := newCluster(t)
	small := c.fork("holdconns")
	big := c.fork("holdconns")
	c.rec.waitFor(fmt.Sprintf("online %d", small.ID()))
	c.rec.waitFor(fmt.Sprintf("online %d", big.ID()))
	lim := unix.Rlimit{Cur: 64, Max: 64}
	if err := unix.Prlimit(small.PID(), unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Skipf("cannot set the worker's RLIMIT_NOFILE: %v", err)
	}
	// The limited worker listens alone at first: it is handed
	// connections until it reaches its limit and refuses them (they wait
	// in the primary), then the other worker joins and takes them.
	addr := holdListen(t, small)
	by := map[string]int{}
	var clients []net.Conn
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	dial := func(n int) {
		for range n {
			cl, err := net.DialTimeout("tcp", addr, waitLimit)
			if err != nil {
				t.Fatalf("dial %d: %v", len(clients), err)
			}
			clients = append(clients, cl)
		}
	}
	dial(conns / 2)
	ev := c.rec.waitFor(fmt.Sprintf("report %d error resource_exhausted", small.ID()))
	if got := holdListen(t, big); got != addr {
		t.Fatalf("workers listen on %s and %s", addr, got)
	}
	dial(conns - conns/2)
	for i, cl := range clients {
		cl.SetReadDeadline(time.Now().Add(waitLimit))
		line, err := bufio.NewReader(cl).ReadString('\n')
		if err != nil {
			t.Fatalf("connection %d was never served (%v); served so far %v", i, err, by)
		}
		by[strings.TrimSpace(line)]++
	}
	t.Logf("served by worker: %v", by)
	smallName := "w" + strconv.FormatUint(small.ID(), 10)
	if by[smallName] == 0 || by[smallName] >= conns {
		t.Errorf("the limited worker holds %d of %d connections", by[smallName], conns)
	}
	// Its link is up, it answers, and it said why it refused.
	if !small.IsConnected() {
		t.Fatal("the limited worker lost its link")
	}
	if n := heldConns(t, small); n != int64(by[smallName]) {
		t.Errorf("the limited worker holds %d connections, the clients saw %d", n, by[smallName])
	}
	if !strings.Contains(ev, "descriptor limit") && !strings.Contains(ev, "too many open files") {
		t.Errorf("error event %q does not say why", ev)
	}
	lost := 0
	for _, l := range c.rec.all() {
		if strings.HasPrefix(l, fmt.Sprintf("report %d error", small.ID())) && strings.Contains(l, "were lost") {
			lost++
		}
	}
	t.Logf("first error event: %s; %d hand-offs truncated (MSG_CTRUNC)", ev, lost)
	for _, l := range c.rec.all() {
		if strings.HasPrefix(l, "exit ") || strings.HasPrefix(l, "disconnect ") {
			t.Errorf("event %q during the test", l)
		}
	}
	for _, cl := range clients {
		cl.Close()
	}
	clients = nil
	for _, w := range []*runtime.Worker{small, big} {
		if err := w.Disconnect(context.Background()); err != nil {
			t.Fatal(err)
		}
		if ev := c.waitExit(w); ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_CLEAN || !ev.GetExitedAfterDisconnect() {
			t.Errorf("worker %d exit %v", w.ID(), ev)
		}
	}
}

// TestExitAfterLinkFailureIsNotClean: exit events tell the truth (issue 9,
// finding 7). A worker whose side of the link fails exits with
// ExitLinkFailure; a worker whose link the primary ended for bad input is
// not reported clean even when it then exits with status 0.
func TestExitAfterLinkFailureIsNotClean(t *testing.T) {
	t.Run("worker side", func(t *testing.T) {
		c := newCluster(t)
		w := c.fork("typed", runtime.WithForkEnv("HERD_TEST_MAX_FRAME=65536"))
		c.rec.waitFor(fmt.Sprintf("online %d", w.ID()))
		// Within the primary's limit, over the worker's: the worker's link
		// ends with ErrFrameTooLarge.
		err := testv1herd.NewTestServiceClient(w).SendPayload(context.Background(), &testv1.PayloadRequest{Data: make([]byte, 1<<20)})
		if err != nil {
			t.Fatal(err)
		}
		ev := c.waitExit(w)
		if ev.GetCode() != runtime.ExitLinkFailure || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_ERROR || ev.GetExitedAfterDisconnect() {
			t.Errorf("exit event %v, want code %d and cause error", ev, runtime.ExitLinkFailure)
		}
	})
	t.Run("primary side", func(t *testing.T) {
		c := newCluster(t)
		w := c.fork("garbage") // exits 0 once the primary closed the link
		c.rec.waitFor(fmt.Sprintf("error %d ", w.ID()))
		ev := c.waitExit(w)
		if ev.GetCode() != 0 || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_ERROR {
			t.Errorf("exit event %v, want code 0 and cause error", ev)
		}
	})
}

// TestOversizeMessagesFailAtOnce (issue 9, finding 8): with the default
// 16 MiB frame limit, 20 MiB and 200 MiB messages, requests, fire-and-forget
// sends and responses alike, fail with resource_exhausted and
// ErrFrameTooLarge without ever being written, and cost nothing else: the
// link stays up and reports no error.
func TestOversizeMessagesFailAtOnce(t *testing.T) {
	tc := newTyped(t)
	w, c := tc.fork()
	ctx := context.Background()
	for _, size := range []int{20 << 20, 200 << 20} {
		data := make([]byte, size)
		_, err := c.Payload(ctx, &testv1.PayloadRequest{Data: data})
		wantCode(t, fmt.Sprintf("%d MiB request", size>>20), err, runtime.CodeResourceExhausted)
		if !errors.Is(err, runtime.ErrFrameTooLarge) {
			t.Errorf("%d MiB request: %v does not match ErrFrameTooLarge", size>>20, err)
		}
		err = c.SendPayload(ctx, &testv1.PayloadRequest{Data: data})
		wantCode(t, fmt.Sprintf("%d MiB send", size>>20), err, runtime.CodeResourceExhausted)
		// The worker's response of that size fails on its side, and the
		// caller gets the code.
		_, err = c.Payload(ctx, &testv1.PayloadRequest{ResponseSize: uint64(size)})
		wantCode(t, fmt.Sprintf("%d MiB response", size>>20), err, runtime.CodeResourceExhausted)
	}
	echoOK(t, c, w)
	for _, l := range tc.rec.of(w.ID()) {
		if strings.HasPrefix(l, "error") && strings.Contains(l, "link") {
			t.Errorf("link error: %s", l)
		}
	}
}
