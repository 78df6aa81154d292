// Package herdhttp serves an *http.Server in a herd worker and drains it,
// without a failed request, when the worker disconnects: the one line a
// worker needs for a rolling reload, a scale-down or a graceful stop that
// its HTTP clients do not notice.
//
//	self, _ := runtime.NewSelf()
//	_ = self.Start(ctx)
//	ln, _ := runtime.Listen(ctx, "tcp", ":8080")
//	err := herdhttp.Serve(ctx, self, &http.Server{Handler: mux}, ln)
//
// http.Server.Shutdown alone is not enough for that. It closes every idle
// keep-alive connection at once, so a client that has just sent its next
// request on one reads an error (a reset or EOF) instead of a response, and
// a request it reads after Shutdown has started (the first request of a
// connection accepted just before, or the next one of a keep-alive
// connection) is dropped without an answer: net/http checks for the
// shutdown after reading a request and closes the connection. HTTP/1.1 has
// no way to tell a client to stop using a connection except by answering
// it with "Connection: close", so the drain here does that:
//
//   - every response to a request that starts after the drain began carries
//     "Connection: close", and the server closes the connection after it:
//     a busy connection ends after its response;
//   - a connection waiting for a request (new, or idle between requests)
//     is closed only once it has been quiet for the idle grace
//     (WithIdleGrace, DefaultIdleGrace): a client that is using it gets its
//     next request answered, with "Connection: close"; one that has left it
//     idle sees it closed between requests, as after any idle timeout;
//   - the connection is closed through its read deadline, which is taken
//     back when the first bytes of a request arrive meanwhile, so that
//     request is read and answered (on Unix the socket is also checked for
//     unread data before the connection closes; bytes that arrive after
//     that check meet a closed connection, as after any idle timeout);
//   - once no HTTP/1 connection is left, http.Server.Shutdown ends the
//     rest: HTTP/2 connections get their GOAWAY and finish their streams.
//
// In a worker, the runtime closes the worker's cluster listeners when a
// disconnect starts (routing to it has stopped; round-robin connections it
// had not accepted go back to the primary) and then runs the drain hooks;
// Serve registers the drain as one (Worker.OnDisconnect), so a disconnect
// waits for it, up to the disconnect's deadline. Outside a cluster (w nil,
// ln from net.Listen or runtime.Listen) ctx ending starts the same drain.
//
// Serve serves what srv.Serve serves on ln: for HTTPS give it a TLS
// listener (runtime.ListenTLS). The connections of a TLS listener are
// drained the same way, except that the read deadline that closes a quiet
// one is not taken back (that needs the bytes under TLS): only the idle
// grace protects a request that arrives at that moment.
package herdhttp
