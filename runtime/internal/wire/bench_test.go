package wire_test

import (
	"testing"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

var benchHeader = wire.Header{Procedure: "/herd.v1.Control/Hello", CallID: 12345, DeadlineUnixNano: 1_700_000_000_000_000_000}

func BenchmarkAppendFrame(b *testing.B) {
	msg := &herdv1.HelloRequest{ProtocolVersion: 1, WorkerId: 7, Pid: 31337}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = wire.AppendFrame(buf[:0], &benchHeader, msg, 0)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendFrameBytes(b *testing.B) {
	payload := make([]byte, 64)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = wire.AppendFrameBytes(buf[:0], &benchHeader, payload, 0)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecode(b *testing.B) {
	frame, err := wire.AppendFrame(nil, &benchHeader, &herdv1.HelloRequest{ProtocolVersion: 1, WorkerId: 7, Pid: 31337}, 0)
	if err != nil {
		b.Fatal(err)
	}
	var env wire.Envelope
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := wire.Decode(frame, 0, &env); n != len(frame) || err != nil {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkAppendFrameSmall is the one-way flood's frame: a procedure and
// a small message whose content changes every time (so no cached size
// can be trusted).
func BenchmarkAppendFrameSmall(b *testing.B) {
	h := wire.Header{Procedure: "/herd.test.v1.TestService/Report"}
	msg := &testv1.ReportRequest{}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		msg.Seq++
		var err error
		buf, err = wire.AppendFrame(buf[:0], &h, msg, 0)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkAppendFrameSplitSmall is AppendFrameSplit on a small message,
// the path of a borrowing call's or reply's direct send (link.SendDirectSplit):
// it must cost what AppendFrame does.
func BenchmarkAppendFrameSplitSmall(b *testing.B) {
	msg := &herdv1.HelloRequest{ProtocolVersion: 1, WorkerId: 7, Pid: 31337}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, _, _, err = wire.AppendFrameSplit(buf[:0], &benchHeader, msg, 0)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkDecodeKnownSmall is the reader's side of the one-way flood: a
// read buffer of small frames to one procedure, the last one known.
func BenchmarkDecodeKnownSmall(b *testing.B) {
	h := wire.Header{Procedure: "/herd.test.v1.TestService/Report"}
	var buf []byte
	frames := 0
	for ; len(buf) < 16<<10; frames++ {
		var err error
		if buf, err = wire.AppendFrame(buf, &h, &testv1.ReportRequest{Seq: uint64(1000 + frames)}, 0); err != nil {
			b.Fatal(err)
		}
	}
	known := []byte(h.Procedure)
	var env wire.Envelope
	b.ReportAllocs()
	for b.Loop() {
		for rest := buf; len(rest) > 0; {
			n, err := wire.DecodeKnown(rest, 0, &env, known)
			if n == 0 || err != nil || !env.KnownProcedure {
				b.Fatal(n, err)
			}
			rest = rest[n:]
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
}
