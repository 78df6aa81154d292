package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime/internal/link"
)

// AdminConn is a client's connection to a primary's admin socket: a
// ClientConn for the generated herdv1herd.AdminServiceClient (what herdctl
// uses). Its calls are handled one at a time, in order; a client that
// watches events while it waits for a reload uses two connections.
type AdminConn struct {
	ep   *endpoint
	path string
}

// DialAdmin connects to the admin socket at path (WithAdminSocket,
// HERD_ADMIN_SOCKET). Errors wrap the system's: errors.Is(err,
// fs.ErrNotExist) when there is no socket (no primary serves one there),
// syscall.ECONNREFUSED when the socket is stale (its primary is gone),
// fs.ErrPermission (EACCES) when the socket file's mode keeps this user
// out. A peer the primary refuses learns it at its first call, whose error
// has CodePermissionDenied.
func DialAdmin(ctx context.Context, path string) (*AdminConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			err = oe.Err // "dial unix PATH:" is said below
		}
		return nil, fmt.Errorf("herd: admin socket %s: %w", path, err)
	}
	f, err := c.(*net.UnixConn).File()
	c.Close()
	if err != nil {
		return nil, fmt.Errorf("herd: admin socket %s: %w", path, err)
	}
	cfg := endpointConfig{maxFrame: adminMaxFrame, mailboxCap: 8, mailboxBytes: 256 << 10, maxQueuedFDs: 1, logger: slog.Default()}
	ep := newEndpoint(cfg, &Mux{}, &Mux{}, nil, context.Background(), func(Code, string, error) {})
	if err := ep.start(f, link.WithoutFDs()); err != nil {
		return nil, fmt.Errorf("herd: admin socket %s: %w", path, err)
	}
	return &AdminConn{ep: ep, path: path}, nil
}

// Call implements ClientConn.
func (c *AdminConn) Call(ctx context.Context, procedure string, req, res proto.Message, opts ...CallOption) error {
	return c.ep.userCall(ctx, procedure, req, res, opts)
}

// Send implements ClientConn. The admin service answers every call; Send
// is there for the interface.
func (c *AdminConn) Send(ctx context.Context, procedure string, req proto.Message, opts ...CallOption) error {
	return c.ep.userSend(ctx, procedure, req, opts)
}

// Close closes the connection and waits for its link to end.
func (c *AdminConn) Close() error {
	c.ep.link.Close()
	<-c.ep.link.Done()
	c.ep.box.Close()
	c.ep.ctl.Close()
	return nil
}
