//go:build linux || darwin

package link

import (
	"context"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// The small frame of the benchmarks: a Hello control call, 40 bytes on the
// wire.
var (
	benchHeader  = wire.Header{Procedure: "/herd.v1.Control/Hello", CallID: 1}
	benchPayload = &herdv1.HelloRequest{ProtocolVersion: 1, WorkerId: 7, Pid: 31337}
)

// benchPair starts two links for one benchmark run; stop closes them.
func benchPair(b *testing.B, ha, hb Handler) (a, c *Link, stop func()) {
	b.Helper()
	fa, fb, err := Pair()
	if err != nil {
		b.Fatal(err)
	}
	if a, err = New(fa, ha); err != nil {
		b.Fatal(err)
	}
	if c, err = New(fb, hb); err != nil {
		b.Fatal(err)
	}
	return a, c, func() {
		a.Close()
		c.Close()
		<-a.Done()
		<-c.Done()
	}
}

// rawConns returns the two ends of a socketpair as net.Conns (non-blocking,
// on the netpoller, like a link's socket).
func rawConns(b *testing.B) (net.Conn, net.Conn) {
	b.Helper()
	fa, fb, err := Pair()
	if err != nil {
		b.Fatal(err)
	}
	defer fa.Close()
	defer fb.Close()
	ca, err := net.FileConn(fa)
	if err != nil {
		b.Fatal(err)
	}
	cb, err := net.FileConn(fb)
	if err != nil {
		b.Fatal(err)
	}
	return ca, cb
}

func reportSyscalls(b *testing.B, writes, reads uint64) {
	n := float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(writes)/n, "writes/frame")
	b.ReportMetric(float64(reads)/n, "reads/frame")
	b.ReportMetric(float64(writes+reads)/n, "syscalls/frame")
}

// BenchmarkRawOneWay is the baseline for BenchmarkLinkOneWay: the same
// 40-byte frames through a bare socketpair, one write per frame, no
// encoding, the reader reading 64 KiB at a time.
func BenchmarkRawOneWay(b *testing.B) {
	frame, err := wire.AppendFrame(nil, &benchHeader, benchPayload, 0)
	if err != nil {
		b.Fatal(err)
	}
	ca, cb := rawConns(b)
	defer ca.Close()
	defer cb.Close()
	var reads uint64
	done := make(chan error, 1)
	want := b.N * len(frame)
	go func() {
		buf := make([]byte, 64<<10)
		for got := 0; got < want; {
			n, err := cb.Read(buf)
			reads++
			if err != nil {
				done <- err
				return
			}
			got += n
		}
		done <- nil
	}()
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := ca.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportSyscalls(b, uint64(b.N), reads)
}

// BenchmarkLinkOneWay sends small frames (a HelloRequest payload) one way
// as fast as Send goes, until the peer's handler has seen them all.
func BenchmarkLinkOneWay(b *testing.B) {
	ctx := context.Background()
	var got atomic.Int64
	target := int64(b.N)
	done := make(chan struct{})
	a, c, stop := benchPair(b, discard, func(*wire.Envelope, []*os.File) error {
		if got.Add(1) == target {
			close(done)
		}
		return nil
	})
	defer stop()
	h := benchHeader
	frame, _ := wire.AppendFrame(nil, &h, benchPayload, 0)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := a.Send(ctx, &h, benchPayload, nil); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	reportSyscalls(b, a.Stats().Writes, c.Stats().Reads)
}

// BenchmarkRawRoundTrip is the baseline for BenchmarkLinkRoundTrip: a 40-byte
// frame echoed through a bare socketpair.
func BenchmarkRawRoundTrip(b *testing.B) {
	frame, _ := wire.AppendFrame(nil, &benchHeader, benchPayload, 0)
	rawRoundTrip(b, frame)
}

// BenchmarkRawRoundTrip1MiB is the baseline for BenchmarkLinkRoundTrip1MiB.
func BenchmarkRawRoundTrip1MiB(b *testing.B) {
	frame, _ := wire.AppendFrameBytes(nil, &benchHeader, make([]byte, 1<<20), 0)
	rawRoundTrip(b, frame)
}

func rawRoundTrip(b *testing.B, frame []byte) {
	ca, cb := rawConns(b)
	defer ca.Close()
	defer cb.Close()
	go func() {
		buf := make([]byte, len(frame))
		for {
			if _, err := io.ReadFull(cb, buf); err != nil {
				return
			}
			if _, err := cb.Write(buf); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, len(frame))
	b.SetBytes(int64(2 * len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := ca.Write(frame); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(ca, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}

// BenchmarkLinkRoundTrip is a ping-pong of small frames: the peer's handler
// answers each frame with a frame, from its reader goroutine.
func BenchmarkLinkRoundTrip(b *testing.B) {
	linkRoundTrip(b, func(l *Link, h *wire.Header) error { return l.Send(context.Background(), h, benchPayload, nil) },
		func(l *Link, h *wire.Header, env *wire.Envelope) error {
			return l.SendBytes(context.Background(), h, env.Payload, nil)
		}, 0)
}

// BenchmarkLinkRoundTrip1MiB echoes a 1 MiB payload.
func BenchmarkLinkRoundTrip1MiB(b *testing.B) {
	payload := make([]byte, 1<<20)
	linkRoundTrip(b, func(l *Link, h *wire.Header) error { return l.SendBytes(context.Background(), h, payload, nil) },
		func(l *Link, h *wire.Header, env *wire.Envelope) error {
			return l.SendBytes(context.Background(), h, env.Payload, nil)
		}, len(payload))
}

func linkRoundTrip(b *testing.B, ping func(*Link, *wire.Header) error, pong func(*Link, *wire.Header, *wire.Envelope) error, size int) {
	pongs := make(chan struct{}, 1)
	var peer atomic.Pointer[Link]
	var replyHeader wire.Header
	a, c, stop := benchPair(b, func(*wire.Envelope, []*os.File) error {
		pongs <- struct{}{}
		return nil
	}, func(env *wire.Envelope, _ []*os.File) error {
		replyHeader.ReplyTo = env.CallID
		return pong(peer.Load(), &replyHeader, env)
	})
	peer.Store(c)
	defer stop()
	h := benchHeader
	frame, _ := wire.AppendFrameBytes(nil, &h, make([]byte, size), 0)
	if size == 0 {
		frame, _ = wire.AppendFrame(nil, &h, benchPayload, 0)
	}
	b.SetBytes(int64(2 * len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := ping(a, &h); err != nil {
			b.Fatal(err)
		}
		<-pongs
	}
	b.StopTimer()
	sa, sc := a.Stats(), c.Stats()
	b.ReportMetric(float64(sa.Writes+sa.Reads+sc.Writes+sc.Reads)/float64(b.N), "syscalls/roundtrip")
}

// BenchmarkLinkRoundTripHandlers is a ping-pong driven by the handlers
// alone: each side's handler answers the other's frame, so no goroutine but
// the links' own takes part (BenchmarkLinkRoundTrip adds the hand-off from
// the reader to a waiting caller, as a request/response call has).
func BenchmarkLinkRoundTripHandlers(b *testing.B) {
	ctx := context.Background()
	var a, c atomic.Pointer[Link]
	var left atomic.Int64
	left.Store(int64(b.N))
	done := make(chan struct{})
	var ha, hc wire.Header
	la, lc, stop := benchPair(b, func(env *wire.Envelope, _ []*os.File) error {
		if left.Add(-1) == 0 {
			close(done)
			return nil
		}
		ha.CallID = env.ReplyTo + 1
		return a.Load().Send(ctx, &ha, benchPayload, nil)
	}, func(env *wire.Envelope, _ []*os.File) error {
		hc.ReplyTo = env.CallID
		return c.Load().SendBytes(ctx, &hc, env.Payload, nil)
	})
	a.Store(la)
	c.Store(lc)
	defer stop()
	h := benchHeader
	b.ReportAllocs()
	b.ResetTimer()
	if err := la.Send(ctx, &h, benchPayload, nil); err != nil {
		b.Fatal(err)
	}
	<-done
	b.StopTimer()
	sa, sc := la.Stats(), lc.Stats()
	b.ReportMetric(float64(sa.Writes+sa.Reads+sc.Writes+sc.Reads)/float64(b.N), "syscalls/roundtrip")
}
