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
//     round trip's latency. SendNow does the same for small control frames
//     that must never wait (credit grants), which would otherwise wake the
//     writer goroutine, and a second thread, for one frame each. A direct
//     write of a message with a large bytes field sends the field from the
//     message itself, with writev(2), and copies only what the socket did
//     not take (wire.AppendFrameSplit).
//   - The reader. It reads with recvmsg(2) into a fixed-size buffer plus a
//     control buffer with room for MaxFDsPerFrame descriptors, decodes as
//     many frames as the buffer holds, and calls the Handler for each, in
//     order. A frame larger than the buffer is read into a buffer of its
//     own, exactly its size, which the handler may keep (Envelope.Owned):
//     a large payload is copied once, by the kernel, and can be decoded
//     without another copy (wire.Unmarshal). Received descriptors go into a FIFO queue; each frame claims
//     exactly Envelope.FDCount of them from its head (see Descriptors
//     below for what a peer may send). Because the handler
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
// # Descriptors
//
// The writer attaches a frame's descriptors to the sendmsg that starts with
// the frame's first byte, and an AF_UNIX stream socket returns them with
// the first bytes of that sendmsg's data: a recvmsg returns the
// descriptors of at most one sendmsg, and stops after the bytes that
// carried them. So the frame that owns the descriptors of a read starts
// within the bytes of that same read. The reader enforces exactly that:
//
//   - A frame that claims descriptors (FDCount) takes them from the oldest
//     batch still queued, which must have arrived with the frame's first
//     byte and hold at least FDCount descriptors; otherwise the frame is a
//     *wire.ProtocolError (it claims descriptors that were not sent with
//     it). More than MaxFDsPerFrame is always one.
//   - Descriptors left in a batch once the next frame to decode starts
//     after the bytes they arrived with (no frame left can claim them), or
//     that arrived with bytes in the middle of a frame, end the link with a
//     *wire.ProtocolError wrapping ErrUnclaimedFDs, and are closed at once.
//
// The check runs as each frame is dispatched and after every read, so
// between two reads the queue holds at most the descriptors of the one
// partial frame at the end of the read buffer (MaxFDsPerFrame), and at
// most twice that during a read: a peer cannot make the link hold
// descriptors no frame claims. (A peer can still move descriptors between
// frames that start in the same read, say one frame claiming the
// descriptors meant for the next; the count stays the same, and the
// handler gets what the frames claim.)
//
// When the receiving process cannot install the descriptors of a read (it
// is at its RLIMIT_NOFILE, or a security module refuses one), the kernel
// installs the first ones, closes the rest and sets MSG_CTRUNC. That is not
// the peer's fault, so the link goes on: the frame that claims them gets
// those installed, and Envelope.FDsLost says how many of its FDCount are
// missing (the last ones), for the handler to refuse what they stood for.
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
