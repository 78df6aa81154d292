package wire

import (
	"errors"
	"math"
)

// PrefixSize is the size in bytes of the big-endian length prefix that starts
// every frame.
const PrefixSize = 4

// DefaultMaxFrameSize is the default limit on the envelope length L of one
// frame (the prefix is not counted). A maxFrame argument <= 0 means this
// value.
const DefaultMaxFrameSize = 16 << 20

// Flag bits of Header.Flags and Envelope.Flags. They mirror herdv1.Flag.
const (
	// FlagCancel marks a frame that cancels the call named by ReplyTo
	// (herdv1.Flag_FLAG_CANCEL).
	FlagCancel uint32 = 1
	// FlagSystem marks a runtime control frame, handled ahead of user
	// messages (herdv1.Flag_FLAG_SYSTEM).
	FlagSystem uint32 = 2
)

// Envelope field numbers, from proto/herd/v1/envelope.proto.
const (
	fieldProcedure = 1
	fieldCallID    = 2
	fieldReplyTo   = 3
	fieldFlags     = 4
	fieldPayload   = 5
	fieldFDCount   = 6
	fieldError     = 7
	fieldDeadline  = 8
	fieldMetadata  = 9

	// herd.v1.Envelope.MetadataEntry (a map entry)
	fieldMetadataKey   = 1
	fieldMetadataValue = 2

	// herd.v1.Error
	fieldErrorCode    = 1
	fieldErrorMessage = 2
)

// ErrFrameTooLarge reports a frame whose envelope is longer than the maximum
// frame size. On the sending side nothing was appended; on the receiving
// side it is detected from the length prefix alone, before any allocation.
// Errors returned by this package wrap it with the sizes involved, so test
// for it with errors.Is.
var ErrFrameTooLarge = errors.New("herd: frame too large")

// ErrInvalidUTF8 is returned by AppendFrame when Header.Procedure is not
// valid UTF-8. Protobuf strings must be valid UTF-8, and the peer (like
// proto.Unmarshal) would reject the frame as a protocol error.
var ErrInvalidUTF8 = errors.New("herd: procedure is not valid UTF-8")

// ProtocolError reports bytes that are not a valid herd frame: a malformed
// envelope, or (in the link package) a frame that claims more file
// descriptors than arrived, or a frame cut short by the end of the stream.
// A link that sees one closes: after bad input the peer can no longer be
// trusted to be in step.
type ProtocolError struct {
	// Cause describes what was wrong.
	Cause error
}

// Error returns "herd: protocol error: " followed by the cause.
func (e *ProtocolError) Error() string {
	if e.Cause == nil {
		return "herd: protocol error"
	}
	return "herd: protocol error: " + e.Cause.Error()
}

// Unwrap returns the cause, so errors.Is(err, io.ErrUnexpectedEOF) and the
// like see through a ProtocolError.
func (e *ProtocolError) Unwrap() error { return e.Cause }

// Header is everything in an Envelope except the payload, as given to the
// sending side. The zero Header encodes as an empty envelope.
type Header struct {
	// Procedure names the method, "/package.Service/Method"; empty on
	// responses. It must be valid UTF-8.
	Procedure string
	// CallID identifies a request that expects a response; zero means
	// fire-and-forget.
	CallID uint64
	// ReplyTo is the CallID a response (or a cancel frame) refers to.
	ReplyTo uint64
	// Flags is a set of Flag bits (FlagCancel, FlagSystem).
	Flags uint32
	// FDCount is the number of file descriptors sent with the frame. The
	// link package sets it itself from the descriptors given to Send.
	FDCount uint32
	// ErrorCode is a herdv1.Code. The error field is written when ErrorCode
	// or ErrorMessage is non-zero.
	ErrorCode int32
	// ErrorMessage describes the error. Invalid UTF-8 in it is replaced by
	// U+FFFD (as strings.ToValidUTF8 does) rather than failing the send: it
	// typically comes from an arbitrary err.Error().
	ErrorMessage string
	// DeadlineUnixNano is the caller's deadline in Unix nanoseconds, or 0.
	DeadlineUnixNano int64
	// Metadata is the call's metadata as key, value pairs: Metadata[2i]
	// is a key and Metadata[2i+1] its value. A trailing odd element is
	// ignored. Keys and values must be valid UTF-8.
	Metadata []string
	// ProcedureValid, set by a caller that has already checked Procedure
	// (the link, when it sent the same string before), makes AppendFrame
	// skip checking that it is valid UTF-8: a stream of messages to one
	// procedure then checks its name once. It is not on the wire.
	ProcedureValid bool
}

// MaxMetadataEntries is how many metadata entries Decode keeps in
// Envelope.Metadata; it counts the rest in Envelope.MetadataCount without
// keeping them, so that a peer's frame full of tiny entries costs a bounded
// amount of memory. The runtime rejects a call that has more.
const MaxMetadataEntries = 64

// MetadataEntry is one decoded metadata entry. Its slices alias the frame.
type MetadataEntry struct {
	Key, Value []byte
}

// Envelope is one decoded frame. Its byte slices alias the buffer given to
// Decode and are valid only as long as that buffer is not reused.
type Envelope struct {
	// Procedure is the procedure name (valid UTF-8, possibly empty).
	Procedure []byte
	// CallID, ReplyTo, Flags and FDCount are as in Header.
	CallID, ReplyTo uint64
	Flags, FDCount  uint32
	// ErrorCode and ErrorMessage are the contents of the error field, and
	// HasError reports whether the field was present at all. A present but
	// empty error field (code 0, no message) cannot be produced by
	// AppendFrame, which omits the field in that case.
	ErrorCode    int32
	ErrorMessage []byte
	HasError     bool
	// DeadlineUnixNano is the caller's deadline in Unix nanoseconds, or 0.
	DeadlineUnixNano int64
	// Metadata holds the first MaxMetadataEntries metadata entries in
	// frame order; a key that occurs twice keeps its last value when they
	// are read into a map, as in proto.Unmarshal. MetadataCount counts
	// every entry, kept or not.
	Metadata      []MetadataEntry
	MetadataCount int
	// Payload is the encoded request or response message.
	Payload []byte
	// FDsLost is not on the wire: the link package sets it to the number
	// of the frame's FDCount descriptors that the receiving kernel could
	// not install (MSG_CTRUNC, typically because the receiver is at its
	// descriptor limit). They are the last ones of the frame; the handler
	// gets the others. Decode sets it to zero.
	FDsLost uint32
	// Len is the length of the whole frame, prefix included, as Decode
	// consumed it. Flow control counts frames by it, on both ends.
	Len int
	// KnownProcedure is not on the wire: DecodeKnown sets it when
	// Procedure is non-empty and equal to its known argument (and so was
	// not checked for UTF-8 again); Decode leaves it false.
	KnownProcedure bool
	// Owned is not on the wire: the link package sets it to the frame's
	// own buffer when the frame was read into one (a frame larger than the
	// link's read buffer), nil otherwise. Owned holds the whole frame,
	// prefix included, and the envelope's slices alias it. A handler may
	// keep slices of it after it returns if it sets Kept. Decode sets it to
	// nil.
	Owned []byte
	// Kept is set by the handler of an Owned frame that keeps slices of it
	// after it returns (UnmarshalPayload does when the message it decodes
	// shares the buffer): the link then gives the buffer up, and may get
	// it back from the handler's side once nothing uses it any more
	// (link.Link.Recycle). Otherwise the link reads the next large frame
	// into the same buffer.
	Kept bool
}

// limit returns the effective maximum frame size for a maxFrame argument.
func limit(maxFrame int) int {
	if maxFrame <= 0 {
		return DefaultMaxFrameSize
	}
	const maxUint32 = 1<<32 - 1 // the prefix cannot announce more
	if uint64(maxFrame) > maxUint32 {
		return min(maxUint32, math.MaxInt)
	}
	return maxFrame
}
