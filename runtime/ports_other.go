//go:build !unix

package runtime

import (
	"context"
	"net"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// Without unix sockets there are no workers, so no shared handles: these
// are the stubs the rest of the runtime calls.

type portTable struct{}

func newPortTable(p *Primary) *portTable { return &portTable{} }

func (pt *portTable) listen(ctx context.Context, req *herdv1.ListenRequest, out *[]int) (*herdv1.ListenResponse, error) {
	return nil, NewError(CodeUnimplemented, ErrListenUnsupported)
}

func (pt *portTable) closeListener(ctx context.Context, req *herdv1.CloseListenerRequest) (*herdv1.CloseListenerResponse, error) {
	return &herdv1.CloseListenerResponse{}, nil
}

func (pt *portTable) stopRouting(w *Worker)  {}
func (pt *portTable) startRouting(w *Worker) {}
func (pt *portTable) dropWorker(w *Worker)   {}

func (pt *portTable) releaseOrphans(ws []*Worker) {}

type listenerSet struct{}

func (s *Self) listen(ctx context.Context, network, address string, cfg *listenConfig) (net.Listener, error) {
	return nil, &net.OpError{Op: "listen", Net: network, Err: ErrListenUnsupported}
}

func (s *Self) listenPacket(ctx context.Context, network, address string, cfg *listenConfig) (net.PacketConn, error) {
	return nil, &net.OpError{Op: "listen", Net: network, Err: ErrListenUnsupported}
}

func (s *Self) handoff(ctx context.Context, req *herdv1.HandoffRequest) { closeFiles(TakeFiles(ctx)) }

func (w *Worker) accepted(req *herdv1.AcceptedRequest) {}

func (s *Self) closeListeners() {}
