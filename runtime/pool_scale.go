package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Scale changes the number of slots to n at run time. Scaling up forks a
// worker into each new slot and returns once they are forked (they become
// ready later); scaling down removes the last slots and disconnects their
// workers gracefully (SIGKILL after the graceful timeout, or when ctx ends),
// and returns once those have exited. Before Start it only sets the size.
func (pl *Pool) Scale(ctx context.Context, n int) error {
	if n < 0 {
		return fmt.Errorf("herd: pool: scale to %d: negative", n)
	}
	pl.mu.Lock()
	if pl.stopping {
		pl.mu.Unlock()
		return ErrPoolStopped
	}
	if !pl.started {
		pl.cfg.size = n
		pl.mu.Unlock()
		return nil
	}
	if have := len(pl.slots); n >= have {
		added := pl.addSlotsLocked(n - have)
		pl.mu.Unlock()
		var errs []error
		for _, s := range added {
			if _, err := pl.forkInto(ctx, s, false); err != nil {
				errs = append(errs, err)
				if !errors.Is(err, ErrPoolStopped) {
					pl.forkFailed(s, err)
				}
			}
		}
		return errors.Join(errs...)
	}
	var going []*member
	var dead []*Worker
	for _, s := range pl.slots[n:] {
		s.removed = true
		dead = append(dead, takeDead(s)...)
		if s.cancel != nil {
			s.cancel()
			s.cancel = nil
		}
		for _, m := range []*member{s.cur, s.next} {
			if m != nil && m.w != nil && !m.isDead {
				m.retiring = true
				going = append(going, m)
			}
		}
	}
	pl.slots = pl.slots[:n:n]
	pl.mu.Unlock()
	pl.p.ports.releaseOrphans(dead) // the sockets dead workers of those slots left
	return pl.retire(ctx, going)
}

// retire disconnects members gracefully, concurrently, and waits for their
// exits to be handled.
func (pl *Pool) retire(ctx context.Context, ms []*member) error {
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, pl.cfg.gracefulTimeout)
			defer cancel()
			errs[i] = m.w.Disconnect(dctx)
			<-m.w.Done()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
