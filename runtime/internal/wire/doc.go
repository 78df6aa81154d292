// Package wire encodes and decodes herd frames.
//
// A frame is a 4-byte big-endian length prefix L followed by L bytes holding
// one protobuf-encoded herd.v1.Envelope:
//
//	+----------------+----------------------------------------+
//	| L (uint32, BE) | Envelope (protobuf, L bytes)           |
//	+----------------+----------------------------------------+
//
// The Envelope is encoded and decoded by hand with protowire, field for field
// compatible with the generated herdv1.Envelope: bytes written by AppendFrame
// decode with proto.Unmarshal into an identical herdv1.Envelope, and
// proto.Marshal output of a herdv1.Envelope decodes with Decode. Fields this
// version does not know are skipped, so a newer peer may add fields.
//
// Both directions are allocation free on the hot path:
//
//   - AppendFrame sizes the payload once (the message's own Size method)
//     and then marshals it straight into the destination buffer with its
//     Marshal method and the cached sizes, as
//     proto.MarshalOptions.MarshalAppend does underneath, so no
//     intermediate payload buffer exists and the size is computed once.
//   - Decode fills a caller-owned Envelope whose byte slices alias the input
//     buffer. The caller decodes the payload (or copies what it keeps) before
//     it reuses the buffer.
//
// Bad input never panics and never allocates the size a peer claims: an
// announced length above the maximum frame size is ErrFrameTooLarge as soon
// as the four prefix bytes are seen, and malformed envelope bytes are a
// *ProtocolError.
package wire
