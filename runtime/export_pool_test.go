package runtime

// Clock is the pool's clock, for tests that inject one.
type Clock = clock

// WithClock makes a pool use c for its delays and timeouts.
func WithClock(c Clock) PoolOption {
	return poolOptionFunc(func(cfg *poolConfig) { cfg.clock = c })
}

// ParseCPUMax exposes parseCPUMax to tests.
var ParseCPUMax = parseCPUMax
