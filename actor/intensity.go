package actor

import (
	"sync"
	"time"
)

// Intensity limits how often a supervisor may restart children: at most Max
// restarts within any Window, like Erlang's MaxR/MaxT. When Allow refuses, the
// supervisor should stop restarting and escalate (give up, exit, alert).
//
// The zero value has Max 0 and refuses every restart. An Intensity carries
// state, must not be copied after first use, and is safe for concurrent use.
type Intensity struct {
	// Max is the number of restarts allowed within Window. Zero or negative
	// allows none.
	Max int
	// Window is the length of the sliding window. A restart at time t counts
	// against the limit while now-t < Window.
	Window time.Duration

	mu    sync.Mutex
	times []time.Time // ring of the last Max allowed restarts, cap == Max
	next  int         // index of the oldest entry once the ring is full
}

// Allow reports whether a restart at now keeps within the limit, and if so
// records it. A refused restart is not recorded, so restarts are allowed
// again once the oldest recorded one leaves the window. Times should come
// from one clock and not go backwards; tests inject them.
func (l *Intensity) Allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max <= 0 {
		return false
	}
	if cap(l.times) != l.Max { // first use, or Max was changed: start afresh
		l.times = make([]time.Time, 0, l.Max)
		l.next = 0
	}
	if len(l.times) < l.Max {
		l.times = append(l.times, now)
		return true
	}
	if now.Sub(l.times[l.next]) < l.Window {
		return false
	}
	l.times[l.next] = now
	l.next++
	if l.next == l.Max {
		l.next = 0
	}
	return true
}

// Reset forgets every recorded restart.
func (l *Intensity) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.times = l.times[:0]
	l.next = 0
}
