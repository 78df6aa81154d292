package runtime

import (
	"os"
	"strconv"
	"time"
)

// A waiting caller that reads its own reply.
//
// The caller that holds the endpoint's waker (callwake.go) does not park at
// once: it first reads the link itself for up to WithCallSpin
// (link.ReadUntil), if the link's reader goroutine is idle, and takes its
// reply off the socket the moment it arrives. A parked caller's reply
// instead waits for the netpoller to wake a thread, which on a machine
// whose idle CPUs sleep deeply (a VM's halt-polling) is most of a round
// trip (see the link's caller_read.go for the figures). A process with
// one P never gets here (its callers wait on their channels): a spin there
// would hold the only P.
//
// The spin is for replies that come quickly. A caller whose replies take
// longer than callSpin would burn callSpin of CPU per call for nothing, so
// each miss (a spin that ended without the reply) doubles the number of
// calls that wait without spinning, up to maxSpinBackoff, and a hit
// starts over: a slow service costs at most one spin per maxSpinBackoff
// calls.

// callSpin is WithCallSpin's default: past the reply latency of a quick
// handler on a 2-vCPU VM (6-10 us), short of a CPU's wake-up from a deep
// idle state. HERD_CALL_SPIN_US sets it (0 turns the spin off).
var callSpin = spinFromEnv(os.Getenv("HERD_CALL_SPIN_US"), 20*time.Microsecond)

// maxSpinBackoff bounds how many calls wait without spinning after misses.
const maxSpinBackoff = 64

// spinFromEnv parses a spin in microseconds, def when v is empty or bad.
func spinFromEnv(v string, def time.Duration) time.Duration {
	if v == "" {
		return def
	}
	us, err := strconv.ParseUint(v, 10, 16)
	if err != nil {
		return def
	}
	return time.Duration(us) * time.Microsecond
}

// spinPolicy is the waker's record of recent spins. Only the waker's
// holder uses it.
type spinPolicy struct {
	d       time.Duration // the spin (WithCallSpin)
	skip    uint32        // calls left that wait without spinning
	backoff uint32        // skip set by the next miss
}

// budget returns how long this call may spin, 0 for none.
func (s *spinPolicy) budget() time.Duration {
	if s.skip > 0 {
		s.skip--
		return 0
	}
	return s.d
}

// record notes a spin's outcome: hit when the reply came within it.
func (s *spinPolicy) record(hit bool) {
	if hit {
		s.backoff = 0
		return
	}
	s.backoff = min(max(2*s.backoff, 1), maxSpinBackoff)
	s.skip = s.backoff
}
