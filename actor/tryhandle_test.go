package actor

import (
	"context"
	"slices"
	"sync"
	"testing"
)

// TestTryHandleIdle: on an idle, empty mailbox TryHandle runs the handler on
// the calling goroutine before it returns, after before.
func TestTryHandleIdle(t *testing.T) {
	var got []string
	me := goid()
	m := NewMailbox(func(s string) {
		if goid() != me {
			t.Error("handler ran on another goroutine")
		}
		got = append(got, s)
	})
	if !m.TryHandle("a", func() { got = append(got, "before") }) {
		t.Fatal("TryHandle on an idle mailbox returned false")
	}
	if !slices.Equal(got, []string{"before", "a"}) {
		t.Fatalf("got %v, want [before a]", got)
	}
	m.Close()
	recv(t, m.Done(), "Done")
}

// TestTryHandleBusy: with a message queued, or the drainer running, or the
// mailbox closed, TryHandle does nothing and returns false.
func TestTryHandleBusy(t *testing.T) {
	hold := make(chan struct{})
	started := make(chan struct{}, 1)
	var mu sync.Mutex
	var got []int
	m := NewMailbox(func(v int) {
		if v == 0 {
			started <- struct{}{}
			<-hold
		}
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
	})
	if err := m.Post(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	recv(t, (<-chan struct{})(started), "handler start")
	called := false
	if m.TryHandle(1, func() { called = true }) || called {
		t.Fatal("TryHandle while the drainer runs handled the message")
	}
	if err := m.Post(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	close(hold)
	m.Close()
	recv(t, m.Done(), "Done")
	if m.TryHandle(3, nil) {
		t.Fatal("TryHandle on a closed mailbox returned true")
	}
	if !slices.Equal(got, []int{0, 2}) {
		t.Fatalf("handled %v, want [0 2]", got)
	}

	q := &queueDispatcher{}
	m2 := NewMailbox(func(int) {}, WithDispatcher(q))
	if err := m2.Post(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if m2.TryHandle(2, nil) {
		t.Fatal("TryHandle with a message queued returned true")
	}
	q.runAll()
}

// TestTryHandlePostsWaitAndPanics: messages posted while TryHandle's handler
// runs are handled after it, in order, by the drainer; a panic in it is
// recovered and reported like a drained message's.
func TestTryHandlePostsWaitAndPanics(t *testing.T) {
	var mu sync.Mutex
	var got []int
	done := make(chan struct{})
	panics := make(chan any, 1)
	var m *Mailbox[int]
	m = NewMailbox(func(v int) {
		if v == 0 {
			for i := 1; i <= 3; i++ {
				if err := m.TryPost(i); err != nil {
					t.Error(err)
				}
			}
			panic("boom")
		}
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
		if v == 3 {
			close(done)
		}
	}, WithPanicHandler(func(r any, _ []byte) { panics <- r }))
	if !m.TryHandle(0, nil) {
		t.Fatal("TryHandle on an idle mailbox returned false")
	}
	if r := recv(t, (<-chan any)(panics), "panic"); r != "boom" {
		t.Fatalf("panic handler got %v", r)
	}
	recv(t, (<-chan struct{})(done), "the posted messages")
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("handled %v, want [1 2 3]", got)
	}
	m.Close()
	recv(t, m.Done(), "Done")
}

// TestTryHandleRacesPosts: one goroutine alternates TryHandle and Post (as
// a link's reader does) while another posts; each goroutine's messages are
// handled in its order, never concurrently, and none is lost.
func TestTryHandleRacesPosts(t *testing.T) {
	const per = 3000
	var mu sync.Mutex
	last := [2]int{-1, -1}
	count := 0
	m := NewMailbox(func(v [2]int) {
		if !mu.TryLock() {
			t.Error("handler called concurrently with itself")
			return
		}
		defer mu.Unlock()
		if v[1] != last[v[0]]+1 {
			t.Errorf("source %d: message %d after %d", v[0], v[1], last[v[0]])
		}
		last[v[0]] = v[1]
		count++
	}, WithCapacity(16))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range per {
			if !m.TryHandle([2]int{0, i}, nil) {
				if err := m.Post(context.Background(), [2]int{0, i}); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	wg.Go(func() {
		for i := range per {
			if err := m.Post(context.Background(), [2]int{1, i}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	m.Close()
	recv(t, m.Done(), "Done")
	if count != 2*per {
		t.Fatalf("handled %d of %d", count, 2*per)
	}
}
