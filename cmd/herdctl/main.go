// Command herdctl operates a running herd primary through its admin socket
// (runtime.WithAdminSocket, or HERD_ADMIN_SOCKET in the primary's
// environment), as pm2 and gunicornc operate theirs:
//
//	herdctl [-socket PATH] status [-json]      the workers, one line per slot
//	herdctl [-socket PATH] reload              replace every worker, slot by slot
//	herdctl [-socket PATH] scale N             set the number of workers
//	herdctl [-socket PATH] kill [-signal SIG] ID
//	herdctl [-socket PATH] disconnect [-drain D] ID
//	herdctl [-socket PATH] recycle ID          replace one worker, new one ready first
//	herdctl [-socket PATH] watch [-all]        the event stream, one logfmt line per event
//
// The socket is -socket, else $HERD_ADMIN_SOCKET. herdctl speaks
// herd.v1.AdminService through the generated client over a herd link, like
// a worker speaks to its primary. It exits 0 on success, 1 when the
// operation failed (a reload that aborted included) and 2 on a usage error.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
