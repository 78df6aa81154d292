//go:build !unix

package runtime

import (
	"context"
	"net"
)

func listenLocal(ctx context.Context, network, address string, cfg *listenConfig) (net.Listener, error) {
	if cfg.fd >= 0 || cfg.fdName != "" {
		return nil, &net.OpError{Op: "listen", Net: network, Err: ErrListenUnsupported}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return limitListen(ln, cfg.maxConns), nil
}

func listenPacketLocal(ctx context.Context, network, address string, cfg *listenConfig) (net.PacketConn, error) {
	if cfg.fd >= 0 || cfg.fdName != "" {
		return nil, &net.OpError{Op: "listen", Net: network, Err: ErrListenUnsupported}
	}
	var lc net.ListenConfig
	return lc.ListenPacket(ctx, network, address)
}
