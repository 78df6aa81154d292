//go:build unix

package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"sync"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// testService implements herd.test.v1.TestService on both sides: on the
// primary (registered on the Primary, so it serves every worker) and in a
// worker started in mode "typed" (registered on its Self).
type testService struct {
	testv1herd.UnimplementedTestServiceHandler

	// self is the worker's Self; nil on the primary.
	self *runtime.Self
	// selfPeer is the worker's client of the primary's TestService.
	selfPeer testv1herd.TestServiceClient
	// reportDelay is simulated work done by every Report.
	reportDelay time.Duration
	// onReport, on the primary, sees every report with its worker.
	onReport func(w *runtime.Worker, req *testv1.ReportRequest)
	// connections, when set, counts the connections the worker's servers
	// hold, for Inspect.
	connections func() int64

	mu      sync.Mutex
	reports uint64
	lastSeq uint64
	broken  bool // a report came out of order
	errs    []string
}

// peer returns a client of the other side of the link the call being
// handled came over.
func (s *testService) peer(ctx context.Context) testv1herd.TestServiceClient {
	if s.self != nil {
		return s.selfPeer
	}
	w, ok := runtime.WorkerFromContext(ctx)
	if !ok {
		panic("primary handler without a worker in its context")
	}
	return testv1herd.NewTestServiceClient(w)
}

// who names the side that answers, and the worker on the other end of its
// link (the calling worker, on the primary).
func (s *testService) who(ctx context.Context) (string, uint64) {
	if s.self != nil {
		return fmt.Sprintf("worker %d", s.self.ID()), s.self.ID()
	}
	w, ok := runtime.WorkerFromContext(ctx)
	if !ok {
		return "primary", 0
	}
	return "primary", w.ID()
}

func (s *testService) Echo(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
	if req.GetRelay() {
		return s.peer(ctx).Echo(ctx, &testv1.EchoRequest{Message: req.GetMessage()})
	}
	side, id := s.who(ctx)
	return &testv1.EchoResponse{Message: side + ":" + req.GetMessage(), WorkerId: id}, nil
}

func (s *testService) Report(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
	s.mu.Lock()
	s.reports++
	if seq := req.GetSeq(); seq != 0 {
		if seq != 1 && seq != s.lastSeq+1 {
			s.broken = true
		}
		s.lastSeq = seq
	}
	s.mu.Unlock()
	if s.reportDelay > 0 {
		time.Sleep(s.reportDelay) // simulated work, not synchronisation
	}
	if s.onReport != nil {
		w, _ := runtime.WorkerFromContext(ctx)
		s.onReport(w, req)
	}
	if req.GetEcho() {
		if err := s.peer(ctx).SendReport(ctx, &testv1.ReportRequest{Message: req.GetMessage(), Seq: req.GetSeq()}); err != nil {
			return nil, err
		}
	}
	return &testv1.ReportResponse{}, nil
}

func (s *testService) Sleep(ctx context.Context, req *testv1.SleepRequest) (*testv1.SleepResponse, error) {
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	peer := s.peer(ctx)
	if err := peer.SendReport(ctx, &testv1.ReportRequest{Message: "sleep: started deadline=" + strconv.FormatInt(deadline, 10)}); err != nil {
		return nil, err
	}
	<-ctx.Done()
	_ = peer.SendReport(context.Background(), &testv1.ReportRequest{Message: "sleep: " + runtime.CodeOf(ctx.Err()).String()})
	return nil, ctx.Err()
}

func (s *testService) Blast(ctx context.Context, req *testv1.BlastRequest) (*testv1.BlastResponse, error) {
	peer := s.peer(ctx)
	// One request, reused: Send encodes it before it returns.
	r := &testv1.ReportRequest{Padding: make([]byte, req.GetPadding())}
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	var sent uint64
	for sent < req.GetCount() {
		r.Seq = sent + 1
		if err := peer.SendReport(ctx, r); err != nil {
			return nil, err
		}
		sent++
	}
	goruntime.ReadMemStats(&after)
	return &testv1.BlastResponse{Sent: sent, Mallocs: after.Mallocs - before.Mallocs}, nil
}

func (s *testService) Payload(ctx context.Context, req *testv1.PayloadRequest) (*testv1.PayloadResponse, error) {
	if n := req.GetResponseSize(); n != 0 {
		return &testv1.PayloadResponse{Data: make([]byte, n)}, nil
	}
	return &testv1.PayloadResponse{Data: req.GetData()}, nil
}

func (s *testService) Fail(ctx context.Context, req *testv1.FailRequest) (*testv1.FailResponse, error) {
	if req.GetRelay() {
		err := s.peer(ctx).SendFail(ctx, &testv1.FailRequest{Code: req.GetCode(), Message: req.GetMessage()})
		return &testv1.FailResponse{}, err
	}
	return nil, runtime.Errorf(runtime.Code(req.GetCode()), "%s", req.GetMessage())
}

func (s *testService) Panic(ctx context.Context, req *testv1.PanicRequest) (*testv1.PanicResponse, error) {
	panic(req.GetMessage())
}

func (s *testService) Files(ctx context.Context, req *testv1.FilesRequest) (*testv1.FilesResponse, error) {
	files := runtime.FilesFromContext(ctx)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) != len(req.GetKinds()) {
		return nil, runtime.Errorf(runtime.CodeInvalidArgument, "%d files for %d kinds", len(files), len(req.GetKinds()))
	}
	side, _ := s.who(ctx)
	res := &testv1.FilesResponse{}
	for i, f := range files {
		var out string
		var err error
		switch req.GetKinds()[i] {
		case testv1.FileKind_FILE_KIND_FILE:
			var b []byte
			b, err = io.ReadAll(f)
			out = string(b)
		case testv1.FileKind_FILE_KIND_CONN:
			out = "conn " + side + "\n"
			err = writeConn(f, out)
		case testv1.FileKind_FILE_KIND_LISTENER:
			out = "accepted " + side + "\n"
			err = acceptAndWrite(ctx, f, out)
		default:
			err = fmt.Errorf("kind %v", req.GetKinds()[i])
		}
		if err != nil {
			return nil, runtime.Errorf(runtime.CodeInvalidArgument, "file %d: %v", i, err)
		}
		res.Results = append(res.Results, out)
	}
	return res, nil
}

func writeConn(f *os.File, msg string) error {
	c, err := net.FileConn(f)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = io.WriteString(c, msg)
	return err
}

func acceptAndWrite(ctx context.Context, f *os.File, msg string) error {
	l, err := net.FileListener(f)
	if err != nil {
		return err
	}
	defer l.Close()
	if d, ok := ctx.Deadline(); ok {
		if dl, ok := l.(interface{ SetDeadline(time.Time) error }); ok {
			dl.SetDeadline(d)
		}
	}
	c, err := l.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = io.WriteString(c, msg)
	return err
}

func (s *testService) Stats(ctx context.Context, req *testv1.StatsRequest) (*testv1.StatsResponse, error) {
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	s.mu.Lock()
	defer s.mu.Unlock()
	return &testv1.StatsResponse{
		Mallocs: ms.Mallocs,
		Reports: s.reports,
		InOrder: !s.broken,
		Errors:  append([]string(nil), s.errs...),
		NumGc:   ms.NumGC,
	}, nil
}

// Disconnect starts the worker's own graceful disconnect.
func (s *testService) Disconnect(ctx context.Context, req *testv1.DisconnectRequest) (*testv1.DisconnectResponse, error) {
	if s.self == nil {
		return nil, runtime.Errorf(runtime.CodeFailedPrecondition, "Disconnect is served by workers")
	}
	go s.self.Disconnect(context.Background())
	return &testv1.DisconnectResponse{}, nil
}

// Ask answers with the message it was sent; the tests that need a
// rendezvous register their own handler instead.
func (s *testService) Ask(ctx context.Context, req *testv1.AskRequest) (*testv1.AskResponse, error) {
	return &testv1.AskResponse{Message: req.GetMessage()}, nil
}

// Flood drops the payload; the flow-control tests register their own
// handler instead.
func (s *testService) Flood(ctx context.Context, req *testv1.FloodRequest) (*testv1.FloodResponse, error) {
	return &testv1.FloodResponse{}, nil
}

// Inspect reports the process's descriptors, goroutines, IDs, the
// connections its servers hold, whether it is dumpable and a variable of
// its environment.
func (s *testService) Inspect(ctx context.Context, req *testv1.InspectRequest) (*testv1.InspectResponse, error) {
	ents, _ := os.ReadDir("/proc/self/fd")
	res := &testv1.InspectResponse{
		Fds:        uint32(len(ents)),
		Goroutines: uint32(goruntime.NumGoroutine()),
		Uid:        uint32(os.Getuid()),
		Gid:        uint32(os.Getgid()),
		Dumpable:   -1,
	}
	if s.connections != nil {
		res.Connections = s.connections()
	}
	if d, err := procDumpable(); err != nil {
		res.DumpableError = err.Error()
	} else {
		res.Dumpable = int32(d)
	}
	groups, _ := os.Getgroups()
	for _, g := range groups {
		res.Groups = append(res.Groups, uint32(g))
	}
	if name := req.GetGetenv(); name != "" {
		res.EnvValue, res.EnvSet = os.LookupEnv(name)
	}
	return res, nil
}

// TakeFDs tries to take another process's descriptors (takeFDs).
func (s *testService) TakeFDs(ctx context.Context, req *testv1.TakeFDsRequest) (*testv1.TakeFDsResponse, error) {
	return takeFDs(int(req.GetPid())), nil
}

// MakePath makes a directory or plants a symbolic link.
func (s *testService) MakePath(ctx context.Context, req *testv1.MakePathRequest) (*testv1.MakePathResponse, error) {
	var err error
	if target := req.GetSymlinkTarget(); target != "" {
		err = os.Symlink(target, req.GetName())
	} else {
		err = os.Mkdir(req.GetName(), 0o755)
	}
	if err != nil {
		return nil, err
	}
	return &testv1.MakePathResponse{}, nil
}

// workerError is the worker's error handler (runtime.WithErrorHandler): it
// keeps the event for Stats and reports it to the primary as
// "error <code> <procedure>".
func (s *testService) workerError(ev *herdv1.ErrorEvent) {
	line := fmt.Sprintf("%s %s", runtime.Code(ev.GetCode()), ev.GetProcedure())
	s.mu.Lock()
	s.errs = append(s.errs, line)
	s.mu.Unlock()
	if s.selfPeer != nil {
		_ = s.selfPeer.SendReport(context.Background(), &testv1.ReportRequest{Message: "error " + line})
	}
}

// typedWorkerMain is a worker serving TestService, configured from the
// environment: HERD_TEST_MAILBOX (mailbox capacity), HERD_TEST_MAX_FRAME
// (maximum frame size), HERD_TEST_REPORT_DELAY (a duration of simulated
// work per Report).
func typedWorkerMain() int {
	svc := &testService{}
	opts := []runtime.SelfOption{runtime.WithOrphanTimeout(time.Second), runtime.WithErrorHandler(svc.workerError)}
	if n, err := strconv.Atoi(os.Getenv("HERD_TEST_MAILBOX")); err == nil {
		opts = append(opts, runtime.WithMailboxCapacity(n))
	}
	if n, err := strconv.Atoi(os.Getenv("HERD_TEST_MAX_FRAME")); err == nil {
		opts = append(opts, runtime.WithMaxFrameSize(n))
	}
	if d, err := time.ParseDuration(os.Getenv("HERD_TEST_REPORT_DELAY")); err == nil {
		svc.reportDelay = d
	}
	if os.Getenv("HERD_TEST_INTERCEPT") == "1" {
		opts = append(opts, runtime.WithInterceptors(workerInterceptor(svc)))
	}
	self, err := runtime.NewSelf(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		return 10
	}
	svc.self = self
	svc.selfPeer = testv1herd.NewTestServiceClient(self)
	var hopts []runtime.HandlerOption
	if os.Getenv("HERD_TEST_BORROW") == "1" {
		hopts = append(hopts, runtime.WithBorrowedRequests())
	}
	if err := testv1herd.RegisterTestServiceHandler(self, svc, hopts...); err != nil {
		fmt.Fprintln(os.Stderr, "register:", err)
		return 11
	}
	if err := self.Start(context.Background()); err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "Start:", err)
		}
		return 12
	}
	<-self.Done()
	select {}
}
