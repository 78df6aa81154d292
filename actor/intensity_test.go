package actor

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestIntensityAllow(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	s := time.Second
	type call struct {
		at   time.Duration
		want bool
	}
	tests := []struct {
		name   string
		max    int
		window time.Duration
		calls  []call
	}{
		{"zero value refuses", 0, 0, []call{{0, false}, {time.Hour, false}}},
		{"negative max refuses", -1, s, []call{{0, false}}},
		{"three in ten seconds", 3, 10 * s, []call{
			{0, true}, {1 * s, true}, {2 * s, true},
			{3 * s, false},    // a fourth within the window
			{10*s - 1, false}, // the restart at 0 is still inside
			{10 * s, true},    // it has left: 1s, 2s, 10s
			{10*s + s/2, false},
			{11 * s, true},    // 2s, 10s, 11s
			{12 * s, true},    // 10s, 11s, 12s
			{13 * s, false},   // refused calls are not recorded, so
			{20*s - 1, false}, // 10s still counts
			{20 * s, true},    // 11s, 12s, 20s
			{21 * s, true},    // 12s, 20s, 21s
			{22*s - 1, false},
			{22 * s, true},    // 20s, 21s, 22s
			{time.Hour, true}, // a quiet hour forgets everything
			{time.Hour + 1, true},
			{time.Hour + 2, true},
			{time.Hour + 3, false},
		}},
		{"one restart per window", 1, 5 * s, []call{
			{0, true}, {4 * s, false}, {5 * s, true}, {6 * s, false}, {10 * s, true},
		}},
		{"zero window never limits", 2, 0, []call{
			{0, true}, {0, true}, {0, true}, {0, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &Intensity{Max: tt.max, Window: tt.window}
			for i, c := range tt.calls {
				if got := l.Allow(at(c.at)); got != c.want {
					t.Fatalf("call %d: Allow(+%v) = %v, want %v", i, c.at, got, c.want)
				}
			}
		})
	}
}

func TestIntensityResetAndResize(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &Intensity{Max: 2, Window: time.Minute}
	if !l.Allow(now) || !l.Allow(now) || l.Allow(now) {
		t.Fatal("Max 2 did not allow exactly two")
	}
	l.Reset()
	if !l.Allow(now) || !l.Allow(now) || l.Allow(now) {
		t.Fatal("Reset did not forget the recorded restarts")
	}
	l.Max = 3 // changing the limit starts afresh with the new size
	for i := range 3 {
		if !l.Allow(now) {
			t.Fatalf("restart %d refused after raising Max to 3", i)
		}
	}
	if l.Allow(now) {
		t.Fatal("fourth restart allowed with Max 3")
	}
}

func TestIntensityConcurrent(t *testing.T) {
	const max, callers = 10, 64
	l := &Intensity{Max: max, Window: time.Minute}
	now := time.Unix(0, 0)
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			if l.Allow(now) {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != max {
		t.Fatalf("allowed %d, want %d", n, max)
	}
}

func ExampleIntensity() {
	// At most 2 restarts in any 10 seconds.
	limit := &Intensity{Max: 2, Window: 10 * time.Second}
	start := time.Unix(0, 0)
	for _, sec := range []int{0, 1, 2, 5, 10, 11, 12} {
		fmt.Println(sec, limit.Allow(start.Add(time.Duration(sec)*time.Second)))
	}
	// Output:
	// 0 true
	// 1 true
	// 2 false
	// 5 false
	// 10 true
	// 11 true
	// 12 false
}
