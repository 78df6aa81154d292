//go:build linux || darwin

package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	"github.com/herd-go/herd/runtime/internal/link"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// These tests put the primary's side of a link, with the runtime's real
// ControlService handlers and port table, against a hostile worker that is
// just the raw other end of the socketpair: no process is forked.

// fakeWorker is a Worker as Fork makes it, without a process: its link's
// other end is raw, for the test to write anything to.
type fakeWorker struct {
	w      *Worker
	raw    *os.File
	frames chan decoded // frames the primary wrote, until it closed the link

	mu       sync.Mutex
	handoffs []decoded // Handoff requests not yet answered
	sig      chan struct{}
}

func newFakeWorker(t testing.TB, p *Primary) *fakeWorker {
	t.Helper()
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	s := p.settings
	p.mu.Unlock()
	w := &Worker{
		id: id, primary: p,
		online: make(chan struct{}), linkClosed: make(chan struct{}),
		exited: make(chan struct{}), done: make(chan struct{}),
		abandon: make(chan struct{}), handlerGrace: s.handlerGrace,
	}
	w.ctx = context.WithValue(context.Background(), workerKey{}, w)
	w.handlerCtx, w.cancelHandlers = context.WithCancel(w.ctx)
	a, b, err := link.Pair()
	if err != nil {
		t.Fatal(err)
	}
	w.ep = newEndpoint(s.endpoint, &p.control, &w.mux, &p.mux, w.handlerCtx, w.errorEvent)
	if err := w.ep.start(a); err != nil {
		b.Close()
		t.Fatal(err)
	}
	go w.watchLink()
	fw := &fakeWorker{w: w, raw: b, frames: make(chan decoded, 1024), sig: make(chan struct{}, 1)}
	go fw.read()
	return fw
}

// read decodes the primary's frames until the link ends; descriptors the
// primary attaches are dropped by the kernel (a plain read has no room for
// them).
func (fw *fakeWorker) read() {
	defer close(fw.frames)
	var buf []byte
	tmp := make([]byte, 64<<10)
	for {
		n, err := fw.raw.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for {
			var env wire.Envelope
			m, derr := wire.Decode(buf, 0, &env)
			if derr != nil || m == 0 {
				break
			}
			d := decoded{
				replyTo: env.ReplyTo, callID: env.CallID, procedure: string(env.Procedure),
				hasError: env.HasError, code: Code(env.ErrorCode), message: string(env.ErrorMessage),
				payload: bytes.Clone(env.Payload),
			}
			if d.procedure == controlHandoffProcedure {
				fw.mu.Lock()
				fw.handoffs = append(fw.handoffs, d)
				fw.mu.Unlock()
			}
			fw.frames <- d
			buf = buf[m:]
		}
		if err != nil {
			return
		}
	}
}

// waitFor returns the first frame the primary writes that satisfies ok,
// or false once the link has ended.
func (fw *fakeWorker) waitFor(ok func(decoded) bool) (decoded, bool) {
	for d := range fw.frames {
		if ok(d) {
			return d, true
		}
	}
	return decoded{}, false
}

// write writes b with fds attached to its first byte; false once the link
// is gone.
func (fw *fakeWorker) write(b []byte, fds []int) bool {
	fd := int(fw.raw.Fd())
	if len(fds) > 0 && len(b) > 0 {
		n, err := unix.SendmsgN(fd, b, unix.UnixRights(fds...), nil, unix.MSG_NOSIGNAL)
		if err != nil {
			return false
		}
		b = b[n:]
	}
	_, err := fw.raw.Write(b)
	return err == nil
}

// close ends the worker's side and waits until the primary has dropped the
// worker (its disconnect event handled) and its mailbox has stopped.
func (fw *fakeWorker) close(t testing.TB) {
	unix.Shutdown(int(fw.raw.Fd()), unix.SHUT_WR)
	for range fw.frames {
	}
	fw.raw.Close()
	select {
	case <-fw.w.linkClosed:
	case <-time.After(dispatchWait):
		t.Fatal("the primary did not drop the worker")
	}
	fw.w.cancelHandlers()
	fw.w.ep.runEvent(func() {})
	fw.w.ep.box.Close()
	fw.w.ep.ctl.Close()
	<-fw.w.ep.box.Done()
	<-fw.w.ep.ctl.Done()
}

// call writes a well-formed request and waits for its reply; false when the
// link ended first.
func (fw *fakeWorker) call(t testing.TB, id uint64, procedure string, req proto.Message) (decoded, bool) {
	t.Helper()
	// Flagged as a worker flags it: system unless its lane is the user's.
	var flags uint32
	if controlLanes[procedure] != laneUser {
		flags = wire.FlagSystem
	}
	b, err := wire.AppendFrame(nil, &wire.Header{Procedure: procedure, CallID: id, Flags: flags}, req, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !fw.write(b, nil) {
		return decoded{}, false
	}
	return fw.waitFor(func(d decoded) bool { return d.replyTo == id })
}

// The operations of FuzzPrimaryControl's script.
const (
	opHello = iota
	opDisconnect
	opListen
	opCloseListener
	opListening
	opHandoffReply
	opUnknown
	opGarbage
	opDial
	opAccepted
	numOps
)

var opProcedures = [...]string{
	opHello:         controlHelloProcedure,
	opDisconnect:    controlDisconnectProcedure,
	opListen:        controlListenProcedure,
	opCloseListener: controlCloseListenerProcedure,
	opListening:     controlListeningProcedure,
	opUnknown:       "/herd.v1.ControlService/Nope",
	opAccepted:      controlServiceAcceptedProcedure,
}

// Script flag bits.
const (
	flagSend     = 1 << iota // fire-and-forget: no call ID
	flagSystem               // set wire.FlagSystem
	flagCancel               // set wire.FlagCancel
	flagReplyTo              // a bogus ReplyTo
	flagPastDead             // a deadline in the past
)

// fuzzScript builds a script for FuzzPrimaryControl: each op is its kind,
// flags, descriptor byte (bits 0-1: descriptors attached, bits 2-3: the
// count the frame claims), a big-endian payload length and the payload.
func fuzzScript(ops ...[]byte) []byte {
	var b []byte
	for _, op := range ops {
		b = append(b, op...)
	}
	return b
}

func fuzzOp(kind, flags, fds byte, payload []byte) []byte {
	b := []byte{kind, flags, fds}
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzPrimaryControl plays a hostile worker against the primary's side of
// its link: a script of control messages (Hello, Disconnect, Listen,
// CloseListener, Listening), replies to the primary's Handoff requests,
// unknown procedures and raw garbage, each with any flags, call IDs,
// payload bytes and descriptor counts, some with descriptors attached, and
// connections to the addresses it listens on, so that the primary hands
// them off. Listen requests that decode are confined to loopback and a
// temporary directory (the primary's allowed unix socket directory);
// everything else, descriptor numbers to listen on included, is as the
// fuzzer wrote it.
//
// The primary must not panic (a handler panic would show as an internal
// error event), must answer every well-formed call until the link ends,
// must end that link only with a typed error, must keep serving another
// worker, and must give back every descriptor and goroutine once the
// hostile worker is gone. Seeds live in testdata/fuzz/FuzzPrimaryControl.
func FuzzPrimaryControl(f *testing.F) {
	hello := mustMarshal(&herdv1.HelloRequest{ProtocolVersion: ProtocolVersion, WorkerId: 2}) // the hostile worker is the second
	listen := mustMarshal(&herdv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", ListenerId: 1, Policy: herdv1.SchedulingPolicy_SCHEDULING_POLICY_ROUND_ROBIN})
	f.Add(fuzzScript(fuzzOp(opHello, 0, 0, hello), fuzzOp(opListen, 0, 0, listen), fuzzOp(opDial, 0, 0, nil),
		fuzzOp(opHandoffReply, 0, 0, mustMarshal(&herdv1.HandoffResponse{Accepted: 1}))))
	// Round-robin reports: credit, then accepted and taken places, some
	// never handed.
	f.Add(fuzzScript(fuzzOp(opHello, 0, 0, hello), fuzzOp(opListen, 0, 0, listen),
		fuzzOp(opAccepted, 0, 0, mustMarshal(&herdv1.AcceptedRequest{ListenerId: 1, Credit: 2})),
		fuzzOp(opDial, 0, 0, nil), fuzzOp(opDial, 0, 0, nil),
		fuzzOp(opAccepted, 0, 0, mustMarshal(&herdv1.AcceptedRequest{ListenerId: 1, Accepted: 2, Taken: []uint64{0, 5, 1 << 40}})),
		fuzzOp(opAccepted, 0, 0, mustMarshal(&herdv1.AcceptedRequest{ListenerId: 1, Taken: []uint64{1, 1}, Returned: 3, Credit: 1 << 31}))))
	NewPrimary(WithLogger(slog.New(slog.DiscardHandler))) // starts the process-wide forker before the first leak snapshot
	f.Fuzz(func(t *testing.T, script []byte) {
		// A hang is a failure too: the waits below have no deadline of
		// their own (they end with the frame or with the link).
		watchdog := time.AfterFunc(2*dispatchWait, func() {
			buf := make([]byte, 1<<20)
			panic(fmt.Sprintf("FuzzPrimaryControl: the iteration hung; script %q\n%s", script, buf[:goruntime.Stack(buf, true)]))
		})
		defer watchdog.Stop()
		base := herdtest.Take()
		dir := t.TempDir()
		p := NewPrimary(WithLogger(slog.New(slog.DiscardHandler)), WithUnixSocketDirs(dir))
		var evMu sync.Mutex
		var events []string
		if err := p.Register(NewUnaryHandler(eventErrorProcedure, func(ctx context.Context, ev *herdv1.ErrorEvent) (*emptypb.Empty, error) {
			evMu.Lock()
			events = append(events, fmt.Sprintf("%d %s %s", ev.GetWorker().GetId(), Code(ev.GetCode()), ev.GetMessage()))
			evMu.Unlock()
			return nil, nil
		})); err != nil {
			t.Fatal(err)
		}
		good := newFakeWorker(t, p)
		bad := newFakeWorker(t, p)

		var clients []net.Conn
		defer func() {
			for _, c := range clients {
				c.Close()
			}
		}()
		rr := map[string]map[uint64]bool{} // round-robin addresses → listener IDs of bad
		var disconnected, desynced bool
		nextID := uint64(1)
		for len(script) >= 5 {
			kind, flags, fdb := script[0]%numOps, script[1], script[2]
			n := int(binary.BigEndian.Uint16(script[3:]))
			script = script[5:]
			payload := script[:min(n, len(script))]
			script = script[len(payload):]

			if kind == opGarbage {
				desynced = true
				if !bad.write(payload, nil) {
					break
				}
				continue
			}
			if kind == opDial {
				addr := ""
				for a, ids := range rr {
					if len(ids) > 0 && (addr == "" || a < addr) {
						addr = a
					}
				}
				if addr == "" || len(clients) >= 8 {
					continue
				}
				bad.mu.Lock()
				before := len(bad.handoffs)
				bad.mu.Unlock()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					continue
				}
				clients = append(clients, c)
				if disconnected || desynced {
					continue // the primary may no longer route to it
				}
				// A hand-off of it (or of an earlier one) follows, unless
				// the link ends.
				bad.waitFor(func(d decoded) bool {
					bad.mu.Lock()
					defer bad.mu.Unlock()
					return len(bad.handoffs) > before
				})
				continue
			}

			h := wire.Header{Procedure: opProcedures[kind]}
			if flags&flagSend == 0 {
				h.CallID = nextID
				nextID++
			}
			if flags&flagSystem != 0 {
				h.Flags |= wire.FlagSystem
			}
			if flags&flagCancel != 0 {
				h.Flags |= wire.FlagCancel
			}
			if flags&flagReplyTo != 0 {
				h.ReplyTo = 1 << 40
			}
			if flags&flagPastDead != 0 {
				h.DeadlineUnixNano = 1
			}
			switch kind {
			case opAccepted:
				// A report: a system frame, never a call.
				h.Flags |= wire.FlagSystem
				h.CallID = 0
			case opHandoffReply:
				// Answer the oldest Handoff still open, or a call never made.
				h.Procedure, h.CallID, h.ReplyTo = "", 0, 1<<41
				bad.mu.Lock()
				if len(bad.handoffs) > 0 {
					h.ReplyTo = bad.handoffs[0].callID
					bad.handoffs = bad.handoffs[1:]
				}
				bad.mu.Unlock()
			case opListen:
				var req herdv1.ListenRequest
				if proto.Unmarshal(payload, &req) == nil {
					switch req.GetNetwork() {
					case "tcp", "tcp4", "udp", "udp4":
						req.Address = "127.0.0.1:0"
					case "tcp6", "udp6":
						req.Address = "[::1]:0"
					case "unix":
						req.Address = filepath.Join(dir, fmt.Sprintf("s%d", req.GetListenerId()%4))
					default:
						req.Address = "127.0.0.1:0"
					}
					payload = mustMarshal(&req)
				}
			}
			var fds []int
			for range fdb & 3 % 3 {
				pr, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				fd, err := unix.Dup(int(pw.Fd()))
				pr.Close()
				pw.Close()
				if err != nil {
					t.Fatal(err)
				}
				fds = append(fds, fd)
			}
			h.FDCount = uint32(fdb >> 2 & 3)
			frame, err := wire.AppendFrameBytes(nil, &h, payload, 0)
			if err != nil {
				closeRawFDs(fds)
				continue
			}
			ok := bad.write(frame, fds)
			closeRawFDs(fds)
			if !ok {
				break
			}
			if int(h.FDCount) != len(fds) {
				desynced = true // a protocol error: the link ends
			}
			if kind == opDisconnect {
				disconnected = true // stops routing, whether answered or not
			}
			if desynced || h.CallID == 0 || h.ReplyTo != 0 || h.Flags&wire.FlagCancel != 0 || kind == opHandoffReply {
				continue
			}
			// Every well-formed call is answered while the link lives.
			d, live := bad.waitFor(func(d decoded) bool { return d.replyTo == h.CallID })
			if !live {
				break
			}
			if d.hasError {
				continue
			}
			switch kind {
			case opListen:
				var req herdv1.ListenRequest
				var res herdv1.ListenResponse
				if proto.Unmarshal(payload, &req) == nil && proto.Unmarshal(d.payload, &res) == nil &&
					res.GetPolicy() == herdv1.SchedulingPolicy_SCHEDULING_POLICY_ROUND_ROBIN && res.GetError() == "" &&
					strings.HasPrefix(req.GetNetwork(), "tcp") {
					if rr[res.GetAddress()] == nil {
						rr[res.GetAddress()] = map[uint64]bool{}
					}
					rr[res.GetAddress()][req.GetListenerId()] = true
				}
			case opCloseListener:
				var req herdv1.CloseListenerRequest
				if proto.Unmarshal(payload, &req) == nil {
					for _, ids := range rr {
						delete(ids, req.GetListenerId())
					}
				}
			}
		}

		// The other worker is served as if nothing happened.
		d, live := good.call(t, 1, controlHelloProcedure, &herdv1.HelloRequest{ProtocolVersion: ProtocolVersion, WorkerId: good.w.id})
		if !live || d.hasError {
			t.Fatalf("the other worker's Hello: live=%t %+v", live, d)
		}
		for _, c := range clients {
			c.Close()
		}
		clients = nil
		bad.close(t)
		good.close(t)
		err := bad.w.ep.link.Err()
		var pe *ProtocolError
		switch {
		case errors.Is(err, ErrLinkClosed), errors.Is(err, io.EOF), errors.Is(err, ErrFrameTooLarge), errors.As(err, &pe):
		default:
			t.Fatalf("the hostile link ended with %v (%T), want a typed error", err, err)
		}
		if err := good.w.ep.link.Err(); !errors.Is(err, link.ErrPeerClosed) {
			t.Fatalf("the other link ended with %v", err)
		}
		evMu.Lock()
		for _, e := range events {
			if strings.Contains(e, "panicked") || strings.HasPrefix(e, fmt.Sprintf("%d ", good.w.id)) {
				t.Errorf("error event %s", e)
			}
		}
		evMu.Unlock()
		p.ports.mu.Lock()
		handles := len(p.ports.handles)
		p.ports.mu.Unlock()
		if handles != 0 {
			t.Errorf("%d handles left after the workers are gone", handles)
		}
		herdtest.Check(t, base, dispatchWait)
	})
}
