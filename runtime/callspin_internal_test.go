package runtime

import (
	"context"
	"testing"
	"time"
)

// A spin that misses its reply makes the next calls wait without spinning,
// twice as many after each further miss, up to maxSpinBackoff; a hit
// starts over. It fails if misses do not back off (a slow service would
// pay a spin per call) or a hit does not restore the spin.
func TestSpinPolicyBacksOff(t *testing.T) {
	s := spinPolicy{d: 20 * time.Microsecond}
	spins := func(calls int) (n int) {
		for range calls {
			if s.budget() > 0 {
				n++
				s.record(false) // every spin misses
			}
		}
		return n
	}
	// 1 + 2 + 4 + ... + 64 skipped calls between spins, then 64 each.
	if got := spins(1000); got < 1000/(maxSpinBackoff+1) || got > 1000/maxSpinBackoff+8 {
		t.Fatalf("%d spins in 1000 calls that all miss, want about %d", got, 1000/(maxSpinBackoff+1))
	}
	for s.budget() == 0 {
	}
	s.record(true)
	for i := range 10 {
		if s.budget() == 0 {
			t.Fatalf("call %d after a hit did not spin", i)
		}
		s.record(true)
	}
}

func TestSpinFromEnv(t *testing.T) {
	def := 20 * time.Microsecond
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"", def}, {"0", 0}, {"35", 35 * time.Microsecond}, {"x", def}, {"-1", def}, {"99999999", def},
	} {
		if got := spinFromEnv(c.v, def); got != c.want {
			t.Errorf("spinFromEnv(%q) = %v, want %v", c.v, got, c.want)
		}
	}
}

// TestWithCallSpin: an endpoint's spin (which its waker takes when made)
// is callSpin's default unless WithCallSpin sets it, 0 included (off). It
// fails if the option is lost on the way to the endpoint.
func TestWithCallSpin(t *testing.T) {
	for _, c := range []struct {
		opts []PrimaryOption
		want time.Duration
	}{
		{nil, callSpin},
		{[]PrimaryOption{WithCallSpin(0)}, 0},
		{[]PrimaryOption{WithCallSpin(7 * time.Microsecond)}, 7 * time.Microsecond},
		{[]PrimaryOption{WithCallSpin(-1)}, 0},
	} {
		p := NewPrimary(c.opts...)
		ep := newEndpoint(p.settings.endpoint.withDefaults(), nil, nil, nil, context.Background(), nil)
		if ep.callSpin != c.want {
			t.Errorf("%d options: endpoint spin %v, want %v", len(c.opts), ep.callSpin, c.want)
		}
	}
}
