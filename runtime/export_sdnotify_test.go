package runtime

// Healthy exposes the pool's health for systemd's watchdog to tests.
func (pl *Pool) Healthy() bool { return pl.healthy() }
