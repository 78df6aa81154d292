package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// The worker's side of recycling and of the watchdog (pool_recycle.go,
// pool_watchdog.go).

// MaxRequests returns how many requests this worker serves before it asks
// its pool to recycle it (the pool's WithRecycleRequests, with this
// worker's jitter), as the primary said in the handshake; 0 means no limit
// (and before Start).
func (s *Self) MaxRequests() uint64 { return s.maxRequests.Load() }

// Requests returns how many requests RequestDone has counted.
func (s *Self) Requests() uint64 { return s.requests.Load() }

// RequestDone counts one request served. When the count reaches
// MaxRequests, the worker asks its pool to recycle it (Self.Recycle with
// reason RECYCLE_REASON_REQUESTS), in the background: the pool starts a
// replacement and, once it is ready, disconnects this worker gracefully,
// so the requests in flight finish. Should the pool not recycle it then
// (its replacement failed to start), it asks again after every further
// tenth of the limit. It is cheap (one atomic add) and safe from any
// goroutine; call it at the end of each HTTP request, job or message:
//
//	next := srv.Handler
//	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		defer self.RequestDone()
//		next.ServeHTTP(w, r)
//	})
func (s *Self) RequestDone() {
	n := s.requests.Add(1)
	limit := s.maxRequests.Load()
	if limit == 0 || n < limit || (n-limit)%max(limit/10, 1) != 0 {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.recycle(ctx, herdv1.RecycleReason_RECYCLE_REASON_REQUESTS, n, ""); err != nil {
			s.cfg.endpoint.logger.Warn("herd: recycle after the request limit", "requests", n, "error", err)
		}
	}()
}

// Recycle asks the primary to replace this worker by the rolling path: its
// pool forks a replacement and, once that one is ready, disconnects this
// worker gracefully (its drain hooks run). It returns once the primary has
// accepted, well before the disconnect; ErrRecycleRefused (wrapped, with
// why) when the worker is in no pool, is leaving, or its pool stops.
// detail (at most 256 bytes kept) goes into the Recycled event. Use it for
// a reason of the worker's own, such as a leak it detects; RequestDone
// calls it for the request limit.
func (s *Self) Recycle(ctx context.Context, detail string) error {
	return s.recycle(ctx, herdv1.RecycleReason_RECYCLE_REASON_WORKER, s.requests.Load(), detail)
}

func (s *Self) recycle(ctx context.Context, reason herdv1.RecycleReason, requests uint64, detail string) error {
	if s.ep == nil {
		return errors.New("herd: Recycle before Self.Start")
	}
	req := &herdv1.RecycleRequest{Reason: reason, Requests: requests, Detail: detail}
	res, err := s.rpc.Recycle(ctx, req)
	if err != nil {
		return fmt.Errorf("herd: worker %d recycle: %w", s.id, err)
	}
	if !res.GetAccepted() {
		return fmt.Errorf("herd: worker %d: %w: %s", s.id, ErrRecycleRefused, res.GetReason())
	}
	return nil
}

// heartbeat answers the watchdog. It runs on the user lane (the primary
