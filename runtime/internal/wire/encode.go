package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/runtime/protoiface"
)

// Envelope tags (field number << 3 | wire type): every field number is
// below 16, so every tag is one byte.
const (
	tagProcedure = fieldProcedure<<3 | byte(protowire.BytesType)
	tagCallID    = fieldCallID<<3 | byte(protowire.VarintType)
	tagReplyTo   = fieldReplyTo<<3 | byte(protowire.VarintType)
	tagFlags     = fieldFlags<<3 | byte(protowire.VarintType)
	tagPayload   = fieldPayload<<3 | byte(protowire.BytesType)
	tagFDCount   = fieldFDCount<<3 | byte(protowire.VarintType)
	tagDeadline  = fieldDeadline<<3 | byte(protowire.VarintType)
)

// zeroHeader stands in for a nil *Header.
var zeroHeader Header

// errPayloadChanged reports a payload message mutated concurrently with
// AppendFrame (its size changed between proto.Size and MarshalAppend).
var errPayloadChanged = errors.New("herd: payload message changed while it was being encoded")

// AppendFrame appends one frame (length prefix and envelope) to dst and
// returns the extended slice. The payload message, which may be nil, is
// sized once and marshaled straight into dst, with no intermediate buffer
// and, when dst has room, no allocation. A nil h is the zero Header.
//
// Generated messages are sized and marshaled through their fast-path
// methods (protoreflect.Message.ProtoMethods: Size, then Marshal with the
// cached sizes, then CheckInitialized), which is what
// proto.MarshalOptions.MarshalAppend does, without its layers; the bytes
// are the same. A message without those methods goes through proto.Size
// and MarshalAppend.
//
// If the envelope would be longer than maxFrame (<= 0 means
// DefaultMaxFrameSize) AppendFrame returns dst unchanged and an error
// wrapping ErrFrameTooLarge. On any error dst is returned unchanged (bytes
// past its length may have been overwritten).
//
// The payload must not be modified concurrently: its size is computed once
// and the marshaled bytes must match it.
func AppendFrame(dst []byte, h *Header, payload proto.Message, maxFrame int) ([]byte, error) {
	if h == nil {
		h = &zeroHeader
	}
	f, err := SizeFrame(h, payload, maxFrame)
	if err != nil {
		return dst, err
	}
	return f.AppendTo(dst, h)
}

// Frame is a frame sized by SizeFrame: the first half of AppendFrame, for
// a caller that needs the frame's length before it encodes it (to pick a
// buffer). It refers to the payload it was sized for, which must not
// change until AppendTo, nor may the Header.
type Frame struct {
	payload proto.Message
	m       protoreflect.Message
	fast    *protoiface.Methods // nil: no fast-path methods
	pn      int                 // payload bytes
	size    int                 // envelope bytes
}

// SizeFrame sizes the frame of h and payload (see AppendFrame), checking
// the procedure and the maximum frame size as AppendFrame does.
func SizeFrame(h *Header, payload proto.Message, maxFrame int) (Frame, error) {
	if h == nil {
		h = &zeroHeader
	}
	f := Frame{payload: payload}
	if payload != nil {
		f.m = payload.ProtoReflect()
		if f.fast = f.m.ProtoMethods(); f.fast != nil && f.fast.Size != nil && f.fast.Marshal != nil {
			f.pn = f.fast.Size(protoiface.SizeInput{Message: f.m}).Size
		} else {
			f.fast = nil
			f.pn = proto.Size(payload)
		}
	}
	var err error
	f.size, err = envelopeSize(h, f.pn, maxFrame)
	return f, err
}

// Len is the length of the frame, its prefix included.
func (f *Frame) Len() int { return PrefixSize + f.size }

// AppendTo appends the frame to dst, as AppendFrame does; h is the Header
// given to SizeFrame (nil for the zero Header). Call it once.
func (f *Frame) AppendTo(dst []byte, h *Header) ([]byte, error) {
	if h == nil {
		h = &zeroHeader
	}
	b := appendHead(slices.Grow(dst, PrefixSize+f.size), h, f.size)
	if pn := f.pn; pn > 0 {
		b = append(b, tagPayload)
		b = appendVarint(b, uint64(pn))
		start := len(b)
		var err error
		if f.fast != nil {
			b, err = marshalFast(b, f.m, f.fast)
		} else {
			b, err = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, f.payload)
		}
		if err != nil {
			return dst, fmt.Errorf("herd: encoding payload %s: %w", f.m.Descriptor().FullName(), err)
		}
		if len(b)-start != pn {
			return dst, errPayloadChanged
		}
	}
	return appendTail(b, h), nil
}

// marshalFast appends m, whose size was just computed by methods.Size, to
// b with its fast-path methods, as proto.MarshalOptions{UseCachedSize:
// true}.MarshalAppend would: marshal, then check that required fields are
// set.
func marshalFast(b []byte, m protoreflect.Message, methods *protoiface.Methods) ([]byte, error) {
	out, err := methods.Marshal(protoiface.MarshalInput{Message: m, Buf: b, Flags: protoiface.MarshalUseCachedSize})
	if err != nil {
		return b, err
	}
	if methods.CheckInitialized != nil {
		_, err = methods.CheckInitialized(protoiface.CheckInitializedInput{Message: m})
	} else {
		err = proto.CheckInitialized(m.Interface())
	}
	return out.Buf, err
}

// appendVarint is protowire.AppendVarint in a form the compiler inlines:
// the envelope's varints are mostly one byte, and dst always has room.
func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// AppendFrameBytes is AppendFrame with a payload that is already encoded.
// An empty payload is omitted from the envelope, as proto3 does.
func AppendFrameBytes(dst []byte, h *Header, payload []byte, maxFrame int) ([]byte, error) {
	if h == nil {
		h = &zeroHeader
	}
	size, err := envelopeSize(h, len(payload), maxFrame)
	if err != nil {
		return dst, err
	}
	b := appendHead(slices.Grow(dst, PrefixSize+size), h, size)
	if len(payload) > 0 {
		b = protowire.AppendTag(b, fieldPayload, protowire.BytesType)
		b = protowire.AppendBytes(b, payload)
	}
	return appendTail(b, h), nil
}

// envelopeSize returns the encoded length of the envelope for h and a
// payload of pn bytes, checking it against maxFrame.
func envelopeSize(h *Header, pn, maxFrame int) (int, error) {
	if !h.ProcedureValid && !utf8.ValidString(h.Procedure) {
		return 0, fmt.Errorf("%w: %q", ErrInvalidUTF8, h.Procedure)
	}
	// Every field number is below 16, so every tag is one byte.
	n := 0
	if len(h.Procedure) > 0 {
		n += 1 + protowire.SizeBytes(len(h.Procedure))
	}
	if h.CallID != 0 {
		n += 1 + protowire.SizeVarint(h.CallID)
	}
	if h.ReplyTo != 0 {
		n += 1 + protowire.SizeVarint(h.ReplyTo)
	}
	if h.Flags != 0 {
		n += 1 + protowire.SizeVarint(uint64(h.Flags))
	}
	if pn > 0 {
		n += 1 + protowire.SizeBytes(pn)
	}
	if h.FDCount != 0 {
		n += 1 + protowire.SizeVarint(uint64(h.FDCount))
	}
	if h.ErrorCode != 0 || len(h.ErrorMessage) > 0 {
		n += 1 + protowire.SizeBytes(errorSize(h))
	}
	if h.DeadlineUnixNano != 0 {
		n += 1 + protowire.SizeVarint(uint64(h.DeadlineUnixNano))
	}
	if len(h.Metadata) > 1 {
		mn, err := metadataSize(h.Metadata)
		if err != nil {
			return 0, err
		}
		n += mn
	}
	if lim := limit(maxFrame); n > lim || n < 0 {
		return 0, fmt.Errorf("%w: envelope of %d bytes, limit is %d", ErrFrameTooLarge, n, lim)
	}
	return n, nil
}

// errorSize returns the encoded length of the herd.v1.Error message for h,
// 0 when the field is omitted.
func errorSize(h *Header) int {
	n := 0
	if h.ErrorCode != 0 {
		// Enums are int32 encoded as sign-extended 64-bit varints.
		n += 1 + protowire.SizeVarint(uint64(int64(h.ErrorCode)))
	}
	if len(h.ErrorMessage) > 0 {
		n += 1 + protowire.SizeBytes(validUTF8Len(h.ErrorMessage))
	}
	return n
}

// metadataSize returns the encoded length of the metadata map field, every
// entry with its tag and length, after checking that every key and value is
// valid UTF-8.
func metadataSize(md []string) (int, error) {
	n := 0
	for i := 0; i+1 < len(md); i += 2 {
		k, v := md[i], md[i+1]
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return 0, fmt.Errorf("%w: metadata %q", ErrInvalidUTF8, k)
		}
		n += 1 + protowire.SizeBytes(entrySize(k, v))
	}
	return n, nil
}

// entrySize is the encoded length of one map entry message. proto.Marshal
// writes both key and value even when empty, and so does appendTail.
func entrySize(k, v string) int {
	return 1 + protowire.SizeBytes(len(k)) + 1 + protowire.SizeBytes(len(v))
}

// appendHead appends the length prefix and fields 1 to 4, which precede the
// payload in field-number order (the order proto.Marshal uses, so encodings
// are byte-identical). b has room for the whole frame.
func appendHead(b []byte, h *Header, size int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	if len(h.Procedure) > 0 {
		b = append(b, tagProcedure)
		b = appendVarint(b, uint64(len(h.Procedure)))
		b = append(b, h.Procedure...)
	}
	if h.CallID != 0 {
		b = append(b, tagCallID)
		b = appendVarint(b, h.CallID)
	}
	if h.ReplyTo != 0 {
		b = append(b, tagReplyTo)
		b = appendVarint(b, h.ReplyTo)
	}
	if h.Flags != 0 {
		b = append(b, tagFlags)
		b = appendVarint(b, uint64(h.Flags))
	}
	return b
}

// appendTail appends fields 6 to 9, which follow the payload.
func appendTail(b []byte, h *Header) []byte {
	if h.FDCount != 0 {
		b = append(b, tagFDCount)
		b = appendVarint(b, uint64(h.FDCount))
	}
	if h.ErrorCode != 0 || len(h.ErrorMessage) > 0 {
		b = appendError(b, h)
	}
	if h.DeadlineUnixNano != 0 {
		b = append(b, tagDeadline)
		b = appendVarint(b, uint64(h.DeadlineUnixNano))
	}
	if len(h.Metadata) > 1 {
		b = appendMetadata(b, h.Metadata)
	}
	return b
}

// appendError appends the error field (a herd.v1.Error message).
func appendError(b []byte, h *Header) []byte {
	b = protowire.AppendTag(b, fieldError, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(errorSize(h)))
	if h.ErrorCode != 0 {
		b = protowire.AppendTag(b, fieldErrorCode, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(h.ErrorCode)))
	}
	if len(h.ErrorMessage) > 0 {
		b = protowire.AppendTag(b, fieldErrorMessage, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(validUTF8Len(h.ErrorMessage)))
		b = appendValidUTF8(b, h.ErrorMessage)
	}
	return b
}

// appendMetadata appends the metadata map field, one entry per pair.
func appendMetadata(b []byte, md []string) []byte {
	for i := 0; i+1 < len(md); i += 2 {
		k, v := md[i], md[i+1]
		b = protowire.AppendTag(b, fieldMetadata, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entrySize(k, v)))
		b = protowire.AppendTag(b, fieldMetadataKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, fieldMetadataValue, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}

// replacement is U+FFFD in UTF-8.
const replacement = "\uFFFD"

// validUTF8Len returns the length of s once each run of invalid UTF-8 bytes
// is replaced by U+FFFD, the rule of strings.ToValidUTF8.
func validUTF8Len(s string) int {
	if utf8.ValidString(s) {
		return len(s)
	}
	n := 0
	invalid := false
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			n++
			i++
			invalid = false
			continue
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		if w == 1 {
			if !invalid {
				n += len(replacement)
				invalid = true
			}
			i++
			continue
		}
		n += w
		i += w
		invalid = false
	}
	return n
}

// appendValidUTF8 appends s with each run of invalid UTF-8 bytes replaced by
// U+FFFD, without allocating beyond dst's growth.
func appendValidUTF8(dst []byte, s string) []byte {
	if utf8.ValidString(s) {
		return append(dst, s...)
	}
	invalid := false
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			dst = append(dst, s[i])
			i++
			invalid = false
			continue
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		if w == 1 {
			if !invalid {
				dst = append(dst, replacement...)
				invalid = true
			}
			i++
			continue
		}
		dst = append(dst, s[i:i+w]...)
		i += w
		invalid = false
	}
	return dst
}
