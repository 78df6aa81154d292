package runtime

// Clock is the pool's clock, for tests that inject one.
type Clock = clock

// WithClock makes a pool use c for its delays and timeouts.
func WithClock(c Clock) PoolOption {
	return poolOptionFunc(func(cfg *poolConfig) { cfg.clock = c })
}

// ParseCPUMax exposes parseCPUMax to tests.
var ParseCPUMax = parseCPUMax

// WithPoolRand sets the random source of the request limits' jitter.
func WithPoolRand(f func() float64) PoolOption {
	return poolOptionFunc(func(cfg *poolConfig) { cfg.rand = f })
}

// WithRSSSampler replaces the pool's reading of /proc/PID/status.
func WithRSSSampler(f func(pid int) (uint64, error)) PoolOption {
	return poolOptionFunc(func(cfg *poolConfig) { cfg.rss = f })
}

// WithHeartbeatHook calls f with each heartbeat answer the watchdog
// records.
func WithHeartbeatHook(f func(worker, seq uint64)) PoolOption {
	return poolOptionFunc(func(cfg *poolConfig) { cfg.heartbeatHook = f })
}

// StallLinkReader makes s's link reader block at the next request it reads
// that expects a reply (it takes the lock the reader needs then, and never
// gives it back): a worker whose reader is stuck.
func StallLinkReader(s *Self) {
	f := &s.ep.inflight
	f.mu.Lock()
	// The next call must not find the lock-free slot free: a placeholder
	// takes it, and a call that held it moves to the map.
	if old := f.one.Swap(&callCtx{}); old != nil {
		if f.m == nil {
			f.m = make(map[uint64]*callCtx)
		}
		f.m[old.id] = old
	}
}
