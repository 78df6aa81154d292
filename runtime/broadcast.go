package runtime

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Broadcast returns a SendConn that sends each message to every live,
// connected worker (Node's loop over cluster.workers calling send). Build a
// generated broadcast client on it:
//
//	all := greetv1herd.NewGreetServiceBroadcastClient(p.Broadcast())
//	err := all.SendGreet(ctx, req)
//
// It is not a ClientConn: a broadcast has no single response to wait for,
// so only fire-and-forget sends compile. To call every worker and collect
// the responses, call each of Workers.
func (p *Primary) Broadcast() SendConn { return broadcast{p} }

type broadcast struct{ p *Primary }

// Send sends req to every live, connected worker and returns the errors of
// those it could not reach, each wrapped with the worker's ID.
func (b broadcast) Send(ctx context.Context, procedure string, req proto.Message, opts ...CallOption) error {
	var errs []error
	for _, w := range b.p.Workers() {
		if !w.IsConnected() {
			continue
		}
		if err := w.Send(ctx, procedure, req, opts...); err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %w", w.id, err))
		}
	}
	return errors.Join(errs...)
}
