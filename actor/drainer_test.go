package actor

import (
	"bytes"
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// goid returns the calling goroutine's ID, from its stack header.
func goid() uint64 {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	f := bytes.Fields(buf[:n])
	id, _ := strconv.ParseUint(string(f[1]), 10, 64)
	return id
}

// drainers counts the goroutines running a dedicated drainer.
func drainers() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), ").drainer(")
}

// waitDrainers waits until exactly want drainer goroutines run.
func waitDrainers(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for drainers() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d drainer goroutines, want %d", drainers(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDrainerKeepsOneGoroutine: messages posted one at a time to an idle
// mailbox (each handled before the next is posted) all run on the same
// goroutine: the drainer parks and is woken, it is not started per turn.
func TestDrainerKeepsOneGoroutine(t *testing.T) {
	handled := make(chan uint64)
	m := NewMailbox(func(int) { handled <- goid() })
	m.linger = time.Hour // the test's pauses must not let it leave
	var first uint64
	for i := range 200 {
		if err := m.Post(context.Background(), i); err != nil {
			t.Fatal(err)
		}
		id := recvValue(t, handled)
		if i == 0 {
			first = id
		} else if id != first {
			t.Fatalf("message %d handled on goroutine %d, the first on %d", i, id, first)
		}
	}
	m.Close()
	recv(t, m.Done(), "Done")
	waitDrainers(t, 0)
}

// TestDrainerLeavesAndComesBack: an idle drainer leaves after lingering,
// and the next post starts a new one; nothing is lost on the way.
func TestDrainerLeavesAndComesBack(t *testing.T) {
	waitDrainers(t, 0)
	handled := make(chan int, 1)
	m := NewMailbox(func(v int) { handled <- v })
	m.linger = time.Millisecond
	for i := range 3 {
		if err := m.Post(context.Background(), i); err != nil {
			t.Fatal(err)
		}
		if got := recvValue(t, handled); got != i {
			t.Fatalf("handled %d, want %d", got, i)
		}
		waitDrainers(t, 0)
	}
	m.Close()
	recv(t, m.Done(), "Done")
}

// TestDrainerLingerRaces: with a linger so short that the drainer leaves
// between almost every two posts, concurrent producers' messages are all
// handled, each producer's in order, one at a time, and Done closes.
func TestDrainerLingerRaces(t *testing.T) {
	const producers, per = 4, 2000
	for _, linger := range []time.Duration{time.Nanosecond, time.Microsecond, 50 * time.Microsecond} {
		var mu sync.Mutex // held by the handler: a second concurrent handler would trip TryLock
		last := make([]int, producers)
		for i := range last {
			last[i] = -1
		}
		m := NewMailbox(func(v [2]int) {
			if !mu.TryLock() {
				t.Error("handler called concurrently with itself")
				return
			}
			defer mu.Unlock()
			if v[1] != last[v[0]]+1 {
				t.Errorf("producer %d: message %d after %d", v[0], v[1], last[v[0]])
			}
			last[v[0]] = v[1]
		}, WithCapacity(8))
		m.linger = linger
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := range per {
					if err := m.Post(context.Background(), [2]int{p, i}); err != nil {
						t.Error(err)
						return
					}
					if i%7 == 0 {
						runtime.Gosched()
					}
				}
			})
		}
		wg.Wait()
		m.Close()
		recv(t, m.Done(), "Done")
		for p, l := range last {
			if l != per-1 {
				t.Fatalf("linger %v: producer %d: last handled %d, want %d", linger, p, l, per-1)
			}
		}
	}
	waitDrainers(t, 0)
}

// TestDrainerSurvivesPanic: the dedicated drainer recovers a panicking
// handler and goes on with the next message on the same goroutine.
func TestDrainerSurvivesPanic(t *testing.T) {
	handled := make(chan uint64, 1)
	panics := make(chan any, 1)
	m := NewMailbox(func(v int) {
		if v == 1 {
			panic("boom")
		}
		handled <- goid()
	}, WithPanicHandler(func(r any, _ []byte) { panics <- r }))
	m.linger = time.Hour
	for i := range 3 {
		if err := m.Post(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	a := recvValue(t, handled)
	if r := recvValue(t, panics); r != "boom" {
		t.Fatalf("panic handler got %v", r)
	}
	if b := recvValue(t, handled); b != a {
		t.Fatalf("after the panic, handled on goroutine %d, before on %d", b, a)
	}
	m.Close()
	recv(t, m.Done(), "Done")
	waitDrainers(t, 0)
}

// recvValue waits for a value on ch or fails the test.
func recvValue[T any](t *testing.T, ch chan T) T {
	t.Helper()
	return recv(t, (<-chan T)(ch), "a value")
}
