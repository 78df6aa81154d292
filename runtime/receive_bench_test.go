//go:build linux || darwin

package runtime

import (
	"context"
	"syscall"
	"testing"

	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// BenchmarkEndpointReceive: the read side alone. A raw writer floods an
// endpoint with small one-way messages (pre-encoded frames, one write per
// 64 KiB), whose handler only counts them, like herd-bench's ipc_oneway
// primary; one op is one message read, decoded and handled. The writer
// costs little, so ns/op is about the receiver's CPU per message.
func BenchmarkEndpointReceive(b *testing.B) {
	done := make(chan struct{})
	var n int
	res := &testv1.ReportResponse{}
	h := NewUnaryHandler(procReport, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
		if n++; n == b.N {
			close(done)
		}
		return res, nil
	})
	// The window holds the whole run: the raw writer takes no credit.
	p := newRawPeerConfig(b, func(c *endpointConfig) {
		c.mailboxCap = 1 << 30
		c.mailboxBytes = 1 << 40
	}, h)
	var chunk []byte
	for i := 0; len(chunk) < 64<<10-64; i++ {
		chunk = append(chunk, p.frame(wire.Header{Procedure: procReport}, marshal(b, &testv1.ReportRequest{Seq: uint64(1000 + i)}))...)
	}
	frame := p.frame(wire.Header{Procedure: procReport}, marshal(b, &testv1.ReportRequest{Seq: 1000}))
	perChunk := 0
	for rest := chunk; len(rest) > 0; perChunk++ {
		var env wire.Envelope
		k, err := wire.Decode(rest, 0, &env)
		if err != nil || k == 0 {
			b.Fatal(err)
		}
		rest = rest[k:]
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := selfCPU()
	left := b.N
	for ; left >= perChunk; left -= perChunk {
		if err := p.write(chunk, nil); err != nil {
			b.Fatal(err)
		}
	}
	for ; left > 0; left-- {
		if err := p.write(frame, nil); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(selfCPU()-cpu0)/float64(b.N), "cpu-ns/msg")
}

// selfCPU is this process's user and system CPU time in nanoseconds.
func selfCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
