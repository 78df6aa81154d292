package actor

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkPost measures Post plus handle per message: posting b.N messages
// and waiting until the last one has been handled.
func BenchmarkPost(b *testing.B) {
	msg := benchMsg{id: 1, name: "x"}
	ctx := context.Background()

	b.Run("SyncDispatcher", func(b *testing.B) {
		var sum uint64
		m := NewMailbox(func(v benchMsg) { sum += v.id }, WithDispatcher(SyncDispatcher{}))
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Post(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
	})

	for _, producers := range []int{1, 4} {
		for _, capacity := range []int{DefaultCapacity, 64} {
			b.Run(fmt.Sprintf("producers=%d/capacity=%d", producers, capacity), func(b *testing.B) {
				var handled atomic.Int64
				m := NewMailbox(func(v benchMsg) { handled.Add(1) }, WithCapacity(capacity))
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				for p := range producers {
					n := b.N / producers
					if p == 0 {
						n += b.N % producers
					}
					wg.Go(func() {
						for range n {
							if err := m.Post(ctx, msg); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				m.Close()
				<-m.Done()
				b.StopTimer()
				if got := handled.Load(); got != int64(b.N) {
					b.Fatalf("handled %d of %d", got, b.N)
				}
			})
		}
	}
}

// BenchmarkPingPong measures one message posted to an idle mailbox and
// handled, the poster waiting for the handler each time: the cost of
// waking the drainer (a parked dedicated drainer, or a new goroutine per
// turn).
func BenchmarkPingPong(b *testing.B) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		d    Dispatcher
	}{{"drainer", nil}, {"GoroutineDispatcher", GoroutineDispatcher{}}} {
		b.Run(tc.name, func(b *testing.B) {
			done := make(chan struct{})
			m := NewMailbox(func(benchMsg) { done <- struct{}{} }, WithDispatcher(tc.d))
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Post(ctx, benchMsg{id: 1}); err != nil {
					b.Fatal(err)
				}
				<-done
			}
			m.Close()
			<-m.Done()
		})
	}
}
