package actor

import (
	"math"
	"math/rand/v2"
	"time"
)

// Defaults used by Backoff for fields left at their zero value.
const (
	DefaultBackoffInitial    = 100 * time.Millisecond
	DefaultBackoffMax        = 15 * time.Second
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffResetAfter = 30 * time.Second
)

// Backoff computes restart delays that grow exponentially, with random jitter
// and a cap. Zero fields take the DefaultBackoff* constants; Jitter defaults
// to none (DefaultBackoff returns a recommended configuration with jitter).
// A Backoff is only read by its methods, so one value may be shared by many
// goroutines as long as Rand is safe for concurrent use (the default is).
type Backoff struct {
	// Initial is the delay before the first restart (attempt 0).
	Initial time.Duration
	// Max caps every delay, jitter included.
	Max time.Duration
	// Multiplier is the growth factor from one attempt to the next. Values
	// below 1 (including zero) select DefaultBackoffMultiplier; 1 gives a
	// constant delay.
	Multiplier float64
	// Jitter spreads each delay uniformly over [d*(1-Jitter), d*(1+Jitter)]
	// (then capped by Max) so that workers that crashed together do not
	// restart together. It is clamped to [0, 1]; zero means no jitter.
	Jitter float64
	// ResetAfter is the uptime after which a child counts as stable: a
	// Restarts tracker then starts again from attempt 0. Zero selects
	// DefaultBackoffResetAfter; a negative value never resets.
	ResetAfter time.Duration
	// Rand returns a number in [0, 1) for jitter. Nil uses math/rand/v2's
	// Float64. Tests inject a fixed function.
	Rand func() float64
}

// DefaultBackoff returns the Backoff a supervisor should use when the user
// configured none: 100ms doubling to 15s with 20% jitter, reset after 30s of
// uptime.
func DefaultBackoff() Backoff {
	return Backoff{
		Initial:    DefaultBackoffInitial,
		Max:        DefaultBackoffMax,
		Multiplier: DefaultBackoffMultiplier,
		Jitter:     0.2,
		ResetAfter: DefaultBackoffResetAfter,
	}
}

// Next returns the delay before restart number attempt, counted from 0:
// Initial*Multiplier^attempt, jittered, and never more than Max. A negative
// attempt counts as 0.
func (b *Backoff) Next(attempt int) time.Duration {
	initial, maxDelay, mult := b.Initial, b.Max, b.Multiplier
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if maxDelay <= 0 {
		maxDelay = DefaultBackoffMax
	}
	if mult < 1 {
		mult = DefaultBackoffMultiplier
	}
	attempt = max(attempt, 0)

	d := float64(initial) * math.Pow(mult, float64(attempt))
	if d > float64(maxDelay) || math.IsNaN(d) {
		d = float64(maxDelay)
	}
	if j := min(max(b.Jitter, 0), 1); j > 0 {
		r := b.Rand
		if r == nil {
			r = rand.Float64
		}
		d *= 1 + j*(2*r()-1)
		d = min(d, float64(maxDelay))
	}
	return time.Duration(max(d, 0))
}

func (b *Backoff) resetAfter() time.Duration {
	if b.ResetAfter == 0 {
		return DefaultBackoffResetAfter
	}
	return b.ResetAfter
}

// Restarts tracks the consecutive restarts of one supervised child and turns
// them into delays with its Backoff. A child that ran for at least
// Backoff.ResetAfter before exiting counts as stable, and the sequence starts
// again from the initial delay. The zero value uses a zero Backoff, i.e. the
// defaults. A Restarts is not safe for concurrent use; it belongs to the
// goroutine that supervises the child.
type Restarts struct {
	// Backoff computes the delays.
	Backoff Backoff

	attempt int
}

// Next records that the child exited after running for uptime and returns
// how long to wait before starting it again.
func (r *Restarts) Next(uptime time.Duration) time.Duration {
	if reset := r.Backoff.resetAfter(); reset >= 0 && uptime >= reset {
		r.attempt = 0
	}
	d := r.Backoff.Next(r.attempt)
	r.attempt++
	return d
}

// Attempt returns the number of consecutive restarts recorded since the last
// reset.
func (r *Restarts) Attempt() int { return r.attempt }

// Reset starts the sequence again from the initial delay.
func (r *Restarts) Reset() { r.attempt = 0 }
