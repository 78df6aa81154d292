package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// Recycling.
//
// A pool replaces a worker that served its request limit
// (WithRecycleRequests: the worker counts, Self.RequestDone, and asks with
// Self.Recycle), whose resident memory the pool sampled above its limit
// (WithRecycleRSS), or that asked (Self.Recycle) by the rolling path: a
// replacement is forked into the worker's slot, and once it is ready the
// worker is disconnected gracefully (routing to it stops, its listeners
// close, its drain hooks run, SIGKILL only at the graceful timeout); never
// a plain kill. One replacement runs at a time in a pool (reloads
// included), so at most one extra worker runs. A Recycled event says so
// before the worker's disconnect, and its exit's cause is
// EXIT_CAUSE_RECYCLED. Only a ready worker is recycled, and a slot at most
// as often as the restart intensity allows restarts (10 in 60 s by
// default): a worker that asks as soon as it is ready cannot make the
// primary fork without end.

const (
	// MinRecycleJitter is the least jitter of a request limit: workers
	// started together get limits at least 10 % apart at most, so they do
	// not all recycle at once (gunicorn's max_requests_jitter may be 0).
	MinRecycleJitter = 0.1
	// DefaultRSSSampleInterval is how often a pool with an RSS limit
	// samples its workers' resident memory.
	DefaultRSSSampleInterval = 30 * time.Second
	// maxRecycleDetail bounds the text a worker gives with Recycle.
	maxRecycleDetail = 256
)

// ErrRecycleRefused is returned by Self.Recycle when the primary will not
// recycle the worker: it is in no pool, it is leaving, or the pool stops.
var ErrRecycleRefused = errors.New("herd: recycle refused")

// WithRecycleRequests makes every worker of the pool ask to be recycled
// once it has served n requests, plus a jitter of its own: each worker's
// limit is n plus a random share of n*jitter (jitter below
// MinRecycleJitter, 0.1, is raised to it). The worker learns its limit in
// its handshake (Self.MaxRequests) and counts with Self.RequestDone, which
// asks the pool when the count reaches it. Default 0: no limit.
func WithRecycleRequests(n uint64, jitter float64) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.maxRequests, c.requestJitter = n, jitter })
}

// WithRecycleRSS makes the pool recycle a ready worker whose resident set
// size, sampled from /proc/PID/stat (Linux; elsewhere nothing is
// sampled), exceeds limit bytes. Default 0: no limit.
func WithRecycleRSS(limit uint64) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.rssLimit = limit })
}

// WithRSSSampleInterval sets how often the RSS limit is checked. Default
// 30 s.
func WithRSSSampleInterval(d time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.rssInterval = d })
}

// requestLimit is a new worker's request limit, with its jitter.
func (pl *Pool) requestLimit() uint64 {
	n := pl.cfg.maxRequests
	if n == 0 {
		return 0
	}
	return n + uint64(float64(n)*pl.cfg.requestJitter*pl.cfg.rand())
}

// recycleInfo is why a worker is recycled, for its Recycled event.
type recycleInfo struct {
	reason   herdv1.RecycleReason
	requests uint64
	rss      uint64
	detail   string
}

// recycleAsked serves a worker's Recycle (on its control lane).
func (pl *Pool) recycleAsked(m *member, req *herdv1.RecycleRequest) *herdv1.RecycleResponse {
	reason := req.GetReason()
	if reason != herdv1.RecycleReason_RECYCLE_REASON_REQUESTS {
		reason = herdv1.RecycleReason_RECYCLE_REASON_WORKER // a worker cannot claim the pool's reasons
	}
	detail := req.GetDetail()
	if len(detail) > maxRecycleDetail {
		detail = detail[:maxRecycleDetail]
	}
	ok, why := pl.recycleMember(m, recycleInfo{reason: reason, requests: req.GetRequests(), detail: detail})
	return &herdv1.RecycleResponse{Accepted: ok, Reason: why}
}

// recycleMember starts recycling m, unless it is leaving already; it
// reports whether m will be (or is being) recycled, and why not.
func (pl *Pool) recycleMember(m *member, info recycleInfo) (bool, string) {
	pl.mu.Lock()
	var why string
	switch {
	case pl.stopping:
		why = "the pool is stopping"
	case m.isDead || m.retiring || m.w == nil || m.w.disconnecting.Load():
		why = "the worker is leaving"
	case m.slot.cur != m || m.slot.removed:
		why = "the worker does not hold its slot yet (a reload's replacement)"
	case m.recycling:
		pl.mu.Unlock()
		return true, ""
	case !m.isReady:
		why = "the worker is not ready yet"
	case !m.slot.recycles.Allow(pl.cfg.clock.Now()):
		// A worker that asks as soon as it starts (or a limit it
		// reaches at once) would fork replacements without end.
		why = fmt.Sprintf("its slot was recycled %d times within %v (WithRestartIntensity)", pl.cfg.intensityMax, pl.cfg.intensityWindow)
	}
	if why != "" {
		pl.mu.Unlock()
		return false, why
	}
	m.recycling = true
	pl.mu.Unlock()
	pl.log.Info("herd: pool: recycling worker", "worker", m.w.id, "slot", m.slot.index, "reason", info.reason,
		"requests", info.requests, "rss", info.rss)
	go pl.recycle(m, info)
	return true, ""
}

// recycle replaces m by the rolling path, after any reload or recycle
// under way.
func (pl *Pool) recycle(m *member, info recycleInfo) {
	pl.reloadMu.Lock()
	defer pl.reloadMu.Unlock()
	pl.mu.Lock()
	s := m.slot
	gone := pl.stopping || m.isDead || m.retiring || s.cur != m || s.removed
	pl.mu.Unlock()
	if gone {
		return // replaced meanwhile (a reload), or leaving
	}
	announce := func(old, repl *member) {
		ev := &herdv1.RecycledEvent{
			Worker: old.w.ident(), Slot: uint32(s.index), Reason: info.reason, Replacement: repl.w.ident(),
			Requests: info.requests, RssBytes: info.rss, Detail: info.detail,
		}
		// On the old worker's lane: before its disconnect and exit.
		old.w.ep.runEvent(func() { old.w.emit(eventRecycledProcedure, ev) })
	}
	repl, err := pl.replaceSlot(context.Background(), s, retireRecycle, announce)
	if err == nil {
		return
	}
	pl.dropReplacement(s, repl)
	pl.mu.Lock()
	m.recycling = false // the next request or sample may try again
	pl.mu.Unlock()
	err = fmt.Errorf("herd: pool: recycle of worker %d failed, it keeps serving: its replacement %w", m.w.id, err)
	pl.log.Error(err.Error(), "slot", s.index)
	m.w.ep.reportError(CodeUnavailable, controlServiceRecycleProcedure, err)
}

// startSampler starts sampling the workers' RSS, when there is a limit.
func (pl *Pool) startSampler() {
	if pl.cfg.rssLimit == 0 {
		return
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.armSamplerLocked()
}

func (pl *Pool) armSamplerLocked() {
	if pl.stopping {
		return
	}
	pl.sampleStop = pl.cfg.clock.AfterFunc(pl.cfg.rssInterval, pl.sampleRSS)
}

// sampleRSS reads every worker's RSS and recycles a ready one above the
// limit.
func (pl *Pool) sampleRSS() {
	pl.mu.Lock()
	if pl.stopping {
		pl.mu.Unlock()
		return
	}
	var ms []*member
	for _, s := range pl.slots {
		if m := s.cur; m != nil && m.w != nil && !m.isDead && !m.retiring {
			ms = append(ms, m)
		}
	}
	pl.mu.Unlock()
	for _, m := range ms {
		rss, err := pl.cfg.rss(m.w.pid)
		if err != nil {
			continue // it exited meanwhile, or nothing can be sampled here
		}
		pl.mu.Lock()
		m.rss = rss
		ready, recycling := m.isReady, m.recycling
		pl.mu.Unlock()
		if rss > pl.cfg.rssLimit && ready && !recycling {
			pl.recycleMember(m, recycleInfo{
				reason: herdv1.RecycleReason_RECYCLE_REASON_RSS, rss: rss,
				detail: fmt.Sprintf("resident memory %d bytes, over the limit of %d", rss, pl.cfg.rssLimit),
			})
		}
	}
	pl.mu.Lock()
	pl.armSamplerLocked()
	pl.mu.Unlock()
}
