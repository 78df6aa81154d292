//go:build unix

package runtime_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// These tests wire the runtime through generated code: the TestService
// stubs of runtime/internal/testpb/testv1/testv1herd on both sides, and the generated
// EventService handler for cluster events.

// eventLog records cluster events in the recorder's line format, with the
// error event's procedure: "error <id> <code> <procedure> <message>".
type eventLog struct {
	herdv1herd.UnimplementedEventServiceHandler
	rec *recorder
}

func (e *eventLog) Fork(ctx context.Context, ev *herdv1.ForkEvent) error {
	e.rec.add(fmt.Sprintf("fork %d", ev.GetWorker().GetId()))
	return nil
}

func (e *eventLog) Online(ctx context.Context, ev *herdv1.OnlineEvent) error {
	e.rec.add(fmt.Sprintf("online %d", ev.GetWorker().GetId()))
	return nil
}

func (e *eventLog) Disconnect(ctx context.Context, ev *herdv1.DisconnectEvent) error {
	e.rec.add(fmt.Sprintf("disconnect %d", ev.GetWorker().GetId()))
	return nil
}

func (e *eventLog) Exit(ctx context.Context, ev *herdv1.ExitEvent) error {
	e.rec.add(fmt.Sprintf("exit %d code=%d signal=%s cause=%s", ev.GetWorker().GetId(), ev.GetCode(), ev.GetSignal(), ev.GetCause()))
	return nil
}

func (e *eventLog) Error(ctx context.Context, ev *herdv1.ErrorEvent) error {
	e.rec.add(fmt.Sprintf("error %d %s %s %s", ev.GetWorker().GetId(), runtime.Code(ev.GetCode()), ev.GetProcedure(), ev.GetMessage()))
	return nil
}

// typed is a primary serving TestService and recording events; reports
// without a seq are recorded as "report <id> <message>", numbered ones are
// checked for order per worker. Everything is reaped and leak-checked at
// the end of the test.
type typed struct {
	t   *testing.T
	p   *runtime.Primary
	rec *recorder
	svc *testService

	mu     sync.Mutex
	seqs   map[uint64]*seqRun
	seqSig chan struct{}
}

// seqRun is what a worker's numbered reports looked like.
type seqRun struct {
	n       uint64 // reports received
	last    uint64 // seq of the last one
	inOrder bool
}

func newTyped(t *testing.T, opts ...runtime.PrimaryOption) *typed {
	t.Helper()
	tc := &typed{t: t, p: runtime.NewPrimary(opts...), rec: newRecorder(t), seqs: map[uint64]*seqRun{}, seqSig: make(chan struct{}, 1)}
	base := herdtest.Take()
	tc.svc = &testService{onReport: tc.report}
	if err := testv1herd.RegisterTestServiceHandler(tc.p, tc.svc); err != nil {
		t.Fatal(err)
	}
	if err := herdv1herd.RegisterEventServiceHandler(tc.p, &eventLog{rec: tc.rec}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		for _, w := range tc.p.Workers() {
			w.Kill(syscall.SIGKILL)
		}
		if err := tc.p.Wait(ctx); err != nil {
			t.Errorf("workers not reaped: %v", err)
		}
		herdtest.Check(t, base, 10*time.Second)
	})
	return tc
}

func (tc *typed) report(w *runtime.Worker, req *testv1.ReportRequest) {
	if req.GetSeq() == 0 {
		tc.rec.add(fmt.Sprintf("report %d %s", w.ID(), req.GetMessage()))
		return
	}
	tc.mu.Lock()
	r := tc.seqs[w.ID()]
	if r == nil {
		r = &seqRun{inOrder: true}
		tc.seqs[w.ID()] = r
	}
	r.n++
	if req.GetSeq() != r.last+1 {
		r.inOrder = false
	}
	r.last = req.GetSeq()
	tc.mu.Unlock()
	select {
	case tc.seqSig <- struct{}{}:
	default:
	}
}

// seqRun returns a copy of worker id's numbered reports so far.
func (tc *typed) seqRun(id uint64) seqRun {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if r := tc.seqs[id]; r != nil {
		return *r
	}
	return seqRun{inOrder: true}
}

// waitSeqs waits until worker id has sent n numbered reports.
func (tc *typed) waitSeqs(id, n uint64) seqRun {
	tc.t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		if r := tc.seqRun(id); r.n >= n {
			return r
		}
		select {
		case <-tc.seqSig:
		case <-timer.C:
			tc.t.Fatalf("worker %d: %d numbered reports, want %d", id, tc.seqRun(id).n, n)
		}
	}
}

// fork starts a worker in mode "typed" with extra environment, waits until
// it is online, and returns it with a client of its TestService.
func (tc *typed) fork(env ...string) (*runtime.Worker, testv1herd.TestServiceClient) {
	tc.t.Helper()
	w, err := tc.p.Fork(context.Background(), herdtest.ForkRole("typed"), runtime.WithForkEnv(env...))
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.rec.waitFor(fmt.Sprintf("online %d", w.ID()))
	return w, testv1herd.NewTestServiceClient(w)
}

func wantCode(t *testing.T, what string, err error, want runtime.Code) {
	t.Helper()
	if got := runtime.CodeOf(err); got != want {
		t.Errorf("%s: error %v (code %v), want code %v", what, err, got, want)
	}
	var e *runtime.Error
	if err != nil && !errors.As(err, &e) {
		t.Errorf("%s: %T is not a *runtime.Error", what, err)
	}
}

func echoOK(t *testing.T, c testv1herd.TestServiceClient, w *runtime.Worker) {
	t.Helper()
	res, err := c.Echo(context.Background(), &testv1.EchoRequest{Message: "still there"})
	if want := fmt.Sprintf("worker %d:still there", w.ID()); err != nil || res.GetMessage() != want {
		t.Fatalf("echo: %v %v, want %q", res, err, want)
	}
}

// TestTypedCallsBothWays: the primary has a client per worker; a worker
// calls the primary, whose handler learns the caller from its context.
func TestTypedCallsBothWays(t *testing.T) {
	tc := newTyped(t)
	w1, c1 := tc.fork()
	w2, c2 := tc.fork()
	ctx := context.Background()
	for _, x := range []struct {
		w *runtime.Worker
		c testv1herd.TestServiceClient
	}{{w1, c1}, {w2, c2}} {
		res, err := x.c.Echo(ctx, &testv1.EchoRequest{Message: "hi"})
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("worker %d:hi", x.w.ID()); res.GetMessage() != want || res.GetWorkerId() != x.w.ID() {
			t.Errorf("worker echo = %q id %d, want %q id %d", res.GetMessage(), res.GetWorkerId(), want, x.w.ID())
		}
		// relay: the worker calls the primary from inside its handler.
		res, err = x.c.Echo(ctx, &testv1.EchoRequest{Message: "up", Relay: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetMessage() != "primary:up" || res.GetWorkerId() != x.w.ID() {
			t.Errorf("relayed echo = %q id %d, want %q id %d", res.GetMessage(), res.GetWorkerId(), "primary:up", x.w.ID())
		}
	}
}

// TestTypedBroadcast sends one message to every worker; each echoes it back.
func TestTypedBroadcast(t *testing.T) {
	tc := newTyped(t)
	var ws []*runtime.Worker
	for range 3 {
		w, _ := tc.fork()
		ws = append(ws, w)
	}
	// The broadcast client has Send methods only: a request/response call
	// to every worker does not compile (TestBroadcastIsSendOnly).
	all := testv1herd.NewTestServiceBroadcastClient(tc.p.Broadcast())
	if err := all.SendReport(context.Background(), &testv1.ReportRequest{Message: "to all", Echo: true}); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		tc.rec.waitFor(fmt.Sprintf("report %d to all", w.ID()))
	}
}

// TestTypedDeadlineAndCancellation: the caller's deadline travels to the
// callee; a cancelled call fails at once and ends the callee's context.
func TestTypedDeadlineAndCancellation(t *testing.T) {
	tc := newTyped(t)
	w, c := tc.fork()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	_, err := c.Sleep(ctx, &testv1.SleepRequest{})
	wantCode(t, "sleep past the deadline", err, runtime.CodeDeadlineExceeded)
	want := fmt.Sprintf("report %d sleep: started deadline=%d", w.ID(), deadline.UnixNano())
	if got := tc.rec.waitFor(fmt.Sprintf("report %d sleep: started", w.ID())); got != want {
		t.Errorf("callee saw %q, want %q", got, want)
	}
	tc.rec.waitFor(fmt.Sprintf("report %d sleep: deadline_exceeded", w.ID()))

	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Sleep(ctx, &testv1.SleepRequest{})
		errc <- err
	}()
	tc.rec.waitFor(fmt.Sprintf("report %d sleep: started deadline=0", w.ID()))
	cancel()
	wantCode(t, "cancelled sleep", <-errc, runtime.CodeCanceled)
	tc.rec.waitFor(fmt.Sprintf("report %d sleep: canceled", w.ID()))

	// A context that has already ended fails the call before it is sent.
	_, err = c.Echo(ctx, &testv1.EchoRequest{})
	wantCode(t, "call with a cancelled context", err, runtime.CodeCanceled)
	echoOK(t, c, w)
}

// TestTypedErrorCodes checks the code of every way a call can fail, and
// that none of them costs the link.
func TestTypedErrorCodes(t *testing.T) {
	const maxFrame = 256 << 10
	tc := newTyped(t, runtime.WithMaxFrameSize(maxFrame))
	w, c := tc.fork(fmt.Sprintf("HERD_TEST_MAX_FRAME=%d", maxFrame))
	ctx := context.Background()

	t.Run("handler codes", func(t *testing.T) {
		for _, code := range []runtime.Code{runtime.CodeInvalidArgument, runtime.CodeNotFound, runtime.CodeInternal, runtime.CodeUnavailable, runtime.CodeResourceExhausted} {
			_, err := c.Fail(ctx, &testv1.FailRequest{Code: herdv1.Code(code), Message: "because " + code.String()})
			wantCode(t, "Fail "+code.String(), err, code)
			var e *runtime.Error
			if errors.As(err, &e) && e.Message() != "because "+code.String() {
				t.Errorf("message %q", e.Message())
			}
		}
	})
	t.Run("unregistered procedure", func(t *testing.T) {
		err := w.Call(ctx, herdv1herd.EventServiceForkProcedure, &herdv1.ForkEvent{}, &emptypb.Empty{})
		wantCode(t, "call of a procedure the worker does not serve", err, runtime.CodeUnimplemented)
		// The callee reports it as an error event too.
		tc.rec.waitFor(fmt.Sprintf("report %d error unimplemented /herd.v1.EventService/Fork", w.ID()))
	})
	t.Run("undecodable request", func(t *testing.T) {
		// Field 1 is bytes in PayloadRequest but a string in EchoRequest:
		// invalid UTF-8 cannot decode as the callee's request.
		err := w.Call(ctx, testv1herd.TestServiceEchoProcedure, &testv1.PayloadRequest{Data: []byte{0xff, 0xfe}}, &testv1.EchoResponse{})
		wantCode(t, "undecodable request", err, runtime.CodeInvalidArgument)
	})
	t.Run("panic", func(t *testing.T) {
		_, err := c.Panic(ctx, &testv1.PanicRequest{Message: "on purpose"})
		wantCode(t, "handler panic", err, runtime.CodeInternal)
		if err != nil && !strings.Contains(err.Error(), "on purpose") {
			t.Errorf("panic error %q does not say why", err)
		}
	})
	t.Run("request too large", func(t *testing.T) {
		_, err := c.Payload(ctx, &testv1.PayloadRequest{Data: make([]byte, 2*maxFrame)})
		wantCode(t, "oversize request", err, runtime.CodeResourceExhausted)
		if !errors.Is(err, runtime.ErrFrameTooLarge) {
			t.Errorf("oversize request: %v does not match ErrFrameTooLarge", err)
		}
		err = c.SendPayload(ctx, &testv1.PayloadRequest{Data: make([]byte, 2*maxFrame)})
		wantCode(t, "oversize fire-and-forget", err, runtime.CodeResourceExhausted)
	})
	t.Run("response too large", func(t *testing.T) {
		_, err := c.Payload(ctx, &testv1.PayloadRequest{ResponseSize: 2 * maxFrame})
		wantCode(t, "oversize response", err, runtime.CodeResourceExhausted)
	})
	t.Run("payload just under the limit", func(t *testing.T) {
		data := make([]byte, maxFrame-1024)
		for i := range data {
			data[i] = byte(i)
		}
		res, err := c.Payload(ctx, &testv1.PayloadRequest{Data: data})
		if err != nil || string(res.GetData()) != string(data) {
			t.Fatalf("payload round trip: %d bytes, %v", len(res.GetData()), err)
		}
	})
	echoOK(t, c, w)

	t.Run("dead worker", func(t *testing.T) {
		w.Kill(syscall.SIGKILL)
		if _, err := w.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		// No deadline: the call must fail by itself, at once.
		_, err := c.Echo(context.Background(), &testv1.EchoRequest{})
		wantCode(t, "call to a dead worker", err, runtime.CodeUnavailable)
		err = c.SendReport(context.Background(), &testv1.ReportRequest{})
		wantCode(t, "send to a dead worker", err, runtime.CodeUnavailable)
	})
	// None of the above made an error event about the link itself, and the
	// worker exited because it was killed.
	for _, l := range tc.rec.of(w.ID()) {
		if strings.HasPrefix(l, "error") && strings.Contains(l, "link") {
			t.Errorf("link error: %s", l)
		}
	}
	if got := tc.rec.waitFor(fmt.Sprintf("exit %d", w.ID())); !strings.Contains(got, "signal=SIGKILL") {
		t.Errorf("exit %q", got)
	}
}

// TestTypedSendErrorsAreEvents: a fire-and-forget message whose handler
// fails becomes an error event on the callee's side.
func TestTypedSendErrorsAreEvents(t *testing.T) {
	tc := newTyped(t)
	w, c := tc.fork()
	ctx := context.Background()

	// Worker side: its error handler (runtime.WithErrorHandler) sees them.
	if err := c.SendFail(ctx, &testv1.FailRequest{Code: herdv1.Code_CODE_FAILED_PRECONDITION, Message: "no"}); err != nil {
		t.Fatal(err)
	}
	tc.rec.waitFor(fmt.Sprintf("report %d error failed_precondition %s", w.ID(), testv1herd.TestServiceFailProcedure))
	if err := c.SendPanic(ctx, &testv1.PanicRequest{Message: "fire and forget"}); err != nil {
		t.Fatal(err)
	}
	tc.rec.waitFor(fmt.Sprintf("report %d error internal %s", w.ID(), testv1herd.TestServicePanicProcedure))

	// Primary side: the EventService's Error event. The worker sends the
	// failing message when asked to relay.
	if _, err := c.Fail(ctx, &testv1.FailRequest{Code: herdv1.Code_CODE_ABORTED, Message: "relayed", Relay: true}); err != nil {
		t.Fatal(err)
	}
	got := tc.rec.waitFor(fmt.Sprintf("error %d ", w.ID()))
	if want := fmt.Sprintf("error %d aborted %s aborted: relayed", w.ID(), testv1herd.TestServiceFailProcedure); got != want {
		t.Errorf("error event %q, want %q", got, want)
	}
	echoOK(t, c, w)
	// The worker's Stats keep the events it saw, in order.
	st, err := c.Stats(ctx, &testv1.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"failed_precondition " + testv1herd.TestServiceFailProcedure, "internal " + testv1herd.TestServicePanicProcedure}
	if fmt.Sprint(st.GetErrors()) != fmt.Sprint(want) {
		t.Errorf("worker error events %q, want %q", st.GetErrors(), want)
	}
}

// TestTypedFilesTravel attaches a file, a connection and a listener to a
// call; the worker's handler reads the file, writes to the connection, and
// accepts on the listener.
func TestTypedFilesTravel(t *testing.T) {
	tc := newTyped(t)
	w, c := tc.fork()
	ctx := context.Background()
	who := fmt.Sprintf("worker %d", w.ID())

	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, []byte("file contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()

	// A connected pair: the server side goes to the worker.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	ln.Close()

	// A listener with a connection waiting to be accepted by the worker.
	ul, err := net.Listen("unix", filepath.Join(t.TempDir(), "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	waiting, err := net.Dial("unix", ul.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()

	cctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	res, err := c.Files(cctx, &testv1.FilesRequest{Kinds: []testv1.FileKind{
		testv1.FileKind_FILE_KIND_FILE, testv1.FileKind_FILE_KIND_CONN, testv1.FileKind_FILE_KIND_LISTENER,
	}}, runtime.WithFiles(file, server.(*net.TCPConn), ul.(*net.UnixListener)))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"file contents", "conn " + who + "\n", "accepted " + who + "\n"}
	if fmt.Sprint(res.GetResults()) != fmt.Sprint(want) {
		t.Errorf("results %q, want %q", res.GetResults(), want)
	}
	for _, x := range []struct {
		conn net.Conn
		want string
	}{{client, "conn " + who + "\n"}, {waiting, "accepted " + who + "\n"}} {
		x.conn.SetReadDeadline(time.Now().Add(waitLimit))
		line, err := bufio.NewReader(x.conn).ReadString('\n')
		if err != nil || line != x.want {
			t.Errorf("read %q, %v; want %q", line, err, x.want)
		}
	}
	// The file travelled as a duplicate sharing the offset: the worker read
	// it to the end.
	if n, _ := file.Read(make([]byte, 1)); n != 0 {
		t.Errorf("file offset not shared with the worker")
	}
	// A count that does not match what the handler expects is its error,
	// and the descriptors it got are closed (the leak check covers that).
	_, err = c.Files(cctx, &testv1.FilesRequest{Kinds: []testv1.FileKind{testv1.FileKind_FILE_KIND_FILE}}, runtime.WithFiles(file, file))
	wantCode(t, "files for fewer kinds", err, runtime.CodeInvalidArgument)
	echoOK(t, c, w)
}

// TestTypedPerWorkerOrdering: two workers blast numbered reports at the
// primary at once while the primary sends numbered reports to both; every
// side sees every message of a link in order.
func TestTypedPerWorkerOrdering(t *testing.T) {
	tc := newTyped(t)
	w1, c1 := tc.fork()
	w2, c2 := tc.fork()
	const n = 3000
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, c := range []testv1herd.TestServiceClient{c1, c2} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			res, err := c.Blast(ctx, &testv1.BlastRequest{Count: n})
			if err != nil || res.GetSent() != n {
				t.Errorf("blast: %v %v", res, err)
			}
		}()
		go func() {
			defer wg.Done()
			r := &testv1.ReportRequest{}
			for i := range uint64(n) {
				r.Seq = i + 1
				if err := c.SendReport(ctx, r); err != nil {
					t.Errorf("send %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, w := range []*runtime.Worker{w1, w2} {
		if r := tc.waitSeqs(w.ID(), n); r.n != n || !r.inOrder || r.last != n {
			t.Errorf("worker %d → primary: %+v", w.ID(), r)
		}
	}
	for i, c := range []testv1herd.TestServiceClient{c1, c2} {
		// Stats is handled after every report sent before it.
		st, err := c.Stats(ctx, &testv1.StatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetReports() != n || !st.GetInOrder() {
			t.Errorf("primary → worker %d: %d reports, in order %t", i+1, st.GetReports(), st.GetInOrder())
		}
	}
}

// TestTypedMailboxBackpressure: with a tiny mailbox and a slow handler on
// the receiving side, a full mailbox stops the link's reader (the sender
// waits) and every message still arrives, in order.
func TestTypedMailboxBackpressure(t *testing.T) {
	const capacity, n = 2, 400
	tc := newTyped(t, runtime.WithMailboxCapacity(capacity))
	tc.svc.reportDelay = 100 * time.Microsecond
	w, c := tc.fork(fmt.Sprintf("HERD_TEST_MAILBOX=%d", capacity), "HERD_TEST_REPORT_DELAY=100us")
	ctx := context.Background()

	// Worker → primary. Blast's reply follows its reports on the link, so
	// the primary reads it only once its mailbox took all but at most
	// capacity of them (plus the one being handled): the reader waited for
	// the slow handler instead of buffering or dropping.
	res, err := c.Blast(ctx, &testv1.BlastRequest{Count: n, Padding: 512})
	if err != nil || res.GetSent() != n {
		t.Fatalf("blast: %v %v", res, err)
	}
	if got := tc.seqRun(w.ID()).n; got < n-capacity-1 {
		t.Errorf("blast answered after %d of %d reports were handled; the mailbox holds %d", got, n, capacity)
	}
	if r := tc.waitSeqs(w.ID(), n); r.n != n || !r.inOrder {
		t.Errorf("worker → primary: %+v", r)
	}

	// Primary → worker: fire-and-forget sends block instead of dropping.
	r := &testv1.ReportRequest{Padding: make([]byte, 512)}
	for i := range uint64(n) {
		r.Seq = i + 1
		if err := c.SendReport(ctx, r); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	st, err := c.Stats(ctx, &testv1.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetReports() != n || !st.GetInOrder() {
		t.Errorf("primary → worker: %d reports, in order %t; want %d in order", st.GetReports(), st.GetInOrder(), n)
	}
}
