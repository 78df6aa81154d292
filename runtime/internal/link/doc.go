// Package link is one end of a herd link: a connected AF_UNIX SOCK_STREAM
// socket (one end of a socketpair) carrying wire frames, and file
// descriptors as SCM_RIGHTS, between a primary and one worker.
//
// # Model
//
// A Link owns its socket and runs exactly two goroutines, both parked on Go's
// netpoller through the socket's syscall.RawConn, never on a blocked thread:
//
//   - The writer. Send encodes the frame in the caller's goroutine, under a
//     mutex, straight into the link's pending buffer (wire.AppendFrame), and
//     wakes the writer. The writer swaps the pending buffer with a spare one
//     (double buffering: no allocation in steady state) and writes everything
//     queued since its last write with one write(2): frames coalesce
//     naturally whenever the senders outpace the socket. A frame that
//     carries file descriptors is written with sendmsg(2), the descriptors
//     attached as SCM_RIGHTS to the first byte of that frame; the bytes
//     before it are flushed first, and if sendmsg writes only part of the
//     frame the rest follows with plain writes. SendDirect, for a sender
//     about to wait for the peer's answer, skips the hand-off when the
//     writer is idle and nothing is queued: it writes the frame itself with
//     non-blocking writes, and leaves whatever the socket did not take to
//     the writer, ahead of anything queued after it. On a machine with idle
//     CPUs a goroutine hand-off costs a thread wake-up, which is most of a
//     round trip's latency.
//   - The reader. It reads with recvmsg(2) into a growable buffer plus a
//     control buffer with room for MaxFDsPerFrame descriptors, decodes as
//     many frames as the buffer holds, and calls the Handler for each, in
//     order. Received descriptors go into a FIFO queue; each frame claims
//     exactly Envelope.FDCount of them from its head. Because the handler
//     runs on the reader goroutine, a handler that blocks stops the reading:
//     the peer's socket buffer fills, then its write queue, then its Send
//     blocks. That is the backpressure, end to end, with nothing dropped.
//
// # Bounds
//
// Frames are limited to WithMaxFrameSize in both directions; an announced
// length above it ends the link with wire.ErrFrameTooLarge before anything
// of that size is allocated. A frame with more than MaxFDsPerFrame
// descriptors cannot be sent. Send blocks while the write queue holds
// WithWriteBufferLimit bytes or more. Each end asks the kernel for a 1 MiB
// socket send buffer, so that large frames and bursts take fewer wake-ups
// of the peer.
//
// With WithCredit a link also flow-controls its requests (frames without
// ReplyTo or wire.FlagSystem): it sends one only within the credit the
// peer granted (Grant), and a Send without enough credit waits for it,
// while replies and system frames always go (see credit.go). A receiver
// that grants only what it has room for then never needs to stop reading.
//
// # Ending
//
// A link ends once, for one reason, reported by Err: a local Close, Abort or
// Shutdown (ErrLinkClosed), the peer closing its end (ErrPeerClosed, which
// matches both io.EOF and ErrLinkClosed), bad input from the peer
// (wire.ErrFrameTooLarge, *wire.ProtocolError), a handler error, or a
// failed system call. Whatever the reason, every received descriptor not
// yet handed to the handler is closed, senders waiting on descriptor frames
// get an error, and Done is closed once both goroutines have returned and
// the socket is closed.
//
// Links work on Linux and macOS. On other systems Pair and New return
// ErrNotSupported.
package link
