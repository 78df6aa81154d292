package actor

import (
	"fmt"
	"testing"
	"time"
)

func fixedRand(v float64) func() float64 { return func() float64 { return v } }

func TestBackoffNext(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		b       Backoff
		attempt int
		want    time.Duration
	}{
		{"zero value first", Backoff{}, 0, DefaultBackoffInitial},
		{"zero value doubles", Backoff{}, 3, 8 * DefaultBackoffInitial},
		{"zero value caps", Backoff{}, 20, DefaultBackoffMax},
		{"negative attempt is first", Backoff{Initial: 5 * ms}, -3, 5 * ms},
		{"custom growth", Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 3}, 2, 9 * time.Second},
		{"custom cap", Backoff{Initial: time.Second, Max: 10 * time.Second, Multiplier: 3}, 3, 10 * time.Second},
		{"multiplier one is constant", Backoff{Initial: 50 * ms, Multiplier: 1}, 40, 50 * ms},
		{"multiplier below one means default", Backoff{Initial: 50 * ms, Multiplier: 0.5}, 2, 200 * ms},
		{"overflowing exponent caps", Backoff{Initial: time.Second, Max: time.Hour}, 1 << 30, time.Hour},
		{"initial above max caps", Backoff{Initial: time.Minute, Max: time.Second}, 0, time.Second},
		{"jitter low end", Backoff{Initial: 100 * ms, Max: time.Hour, Jitter: 0.2, Rand: fixedRand(0)}, 1, 160 * ms},
		{"jitter middle", Backoff{Initial: 100 * ms, Max: time.Hour, Jitter: 0.2, Rand: fixedRand(0.5)}, 1, 200 * ms},
		{"jitter high end", Backoff{Initial: 100 * ms, Max: time.Hour, Jitter: 0.5, Rand: fixedRand(0.75)}, 1, 250 * ms},
		{"jitter never exceeds max", Backoff{Initial: 100 * ms, Max: 150 * ms, Jitter: 0.5, Rand: fixedRand(0.99)}, 5, 150 * ms},
		{"jitter below cap", Backoff{Initial: 100 * ms, Max: 200 * ms, Jitter: 0.5, Rand: fixedRand(0)}, 5, 100 * ms},
		{"jitter clamped to one", Backoff{Initial: 100 * ms, Jitter: 7, Rand: fixedRand(0)}, 0, 0},
		{"negative jitter is none", Backoff{Initial: 100 * ms, Jitter: -1, Rand: fixedRand(0)}, 0, 100 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.Next(tt.attempt); got != tt.want {
				t.Fatalf("Next(%d) = %v, want %v", tt.attempt, got, tt.want)
			}
		})
	}
}

func TestBackoffDefaultRandStaysInRange(t *testing.T) {
	b := DefaultBackoff()
	for attempt := range 12 {
		base := (&Backoff{Initial: b.Initial, Max: b.Max, Multiplier: b.Multiplier}).Next(attempt)
		lo := time.Duration(float64(base) * (1 - b.Jitter))
		hi := min(time.Duration(float64(base)*(1+b.Jitter)), b.Max)
		distinct := map[time.Duration]bool{}
		for range 200 {
			d := b.Next(attempt)
			if d < lo || d > hi {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, lo, hi)
			}
			distinct[d] = true
		}
		if base < b.Max && len(distinct) < 2 {
			t.Fatalf("attempt %d: no jitter in 200 draws", attempt)
		}
	}
}

func TestRestarts(t *testing.T) {
	s := time.Second
	type step struct {
		uptime      time.Duration
		wantDelay   time.Duration
		wantAttempt int // after the step
	}
	tests := []struct {
		name  string
		b     Backoff
		steps []step
	}{
		{
			name: "grows then resets after stable uptime",
			b:    Backoff{Initial: s, Max: time.Minute, ResetAfter: 10 * s},
			steps: []step{
				{0, s, 1}, {2 * s, 2 * s, 2}, {9 * s, 4 * s, 3},
				{10 * s, s, 1}, // ran long enough: stable
				{0, 2 * s, 2},
			},
		},
		{
			name: "default reset after",
			b:    Backoff{Initial: s, Max: time.Minute},
			steps: []step{
				{0, s, 1}, {DefaultBackoffResetAfter - 1, 2 * s, 2}, {DefaultBackoffResetAfter, s, 1},
			},
		},
		{
			name: "negative reset after never resets",
			b:    Backoff{Initial: s, Max: 4 * s, ResetAfter: -1},
			steps: []step{
				{0, s, 1}, {time.Hour, 2 * s, 2}, {time.Hour, 4 * s, 3}, {time.Hour, 4 * s, 4},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Restarts{Backoff: tt.b}
			for i, st := range tt.steps {
				if got := r.Next(st.uptime); got != st.wantDelay {
					t.Fatalf("step %d: Next(%v) = %v, want %v", i, st.uptime, got, st.wantDelay)
				}
				if got := r.Attempt(); got != st.wantAttempt {
					t.Fatalf("step %d: Attempt = %d, want %d", i, got, st.wantAttempt)
				}
			}
			r.Reset()
			if r.Attempt() != 0 || r.Next(0) != tt.b.Next(0) {
				t.Fatal("Reset did not restart the sequence")
			}
		})
	}
}

func ExampleBackoff() {
	b := Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2}
	for attempt := range 6 {
		fmt.Println(b.Next(attempt))
	}
	// Output:
	// 100ms
	// 200ms
	// 400ms
	// 800ms
	// 1.6s
	// 2s
}
