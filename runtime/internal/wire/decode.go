package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Decode parses the frame at the start of b into env and returns the number
// of bytes it took (prefix included).
//
// If b holds less than one whole frame Decode returns 0 and a nil error: the
// caller reads more and calls again. The length prefix is checked as soon as
// its four bytes are present: a length above maxFrame (<= 0 means
// DefaultMaxFrameSize) is an error wrapping ErrFrameTooLarge at once, so a
// reader never waits for, or allocates, the size a peer claims. Envelope
// bytes that are not a valid herd.v1.Envelope are a *ProtocolError.
//
// Decode overwrites every field of env (on error their contents are
// unspecified); its byte slices alias b. Fields the
// envelope does not define are skipped. As in proto.Unmarshal, a field that
// occurs twice keeps its last value and two error fields are merged.
func Decode(b []byte, maxFrame int, env *Envelope) (n int, err error) {
	return DecodeKnown(b, maxFrame, env, nil)
}

// DecodeKnown is Decode for a caller that has already seen the procedure
// name known pass the check (a link remembers the last one it decoded): a
// procedure field whose bytes equal known is not checked for valid UTF-8
// again. Any other procedure is checked as by Decode, and invalid UTF-8 is
// the same *ProtocolError. known must be valid UTF-8; a nil or empty known
// skips nothing but the check of an empty procedure, which is valid.
func DecodeKnown(b []byte, maxFrame int, env *Envelope, known []byte) (n int, err error) {
	if len(b) < PrefixSize {
		return 0, nil
	}
	l := binary.BigEndian.Uint32(b)
	if lim := limit(maxFrame); uint64(l) > uint64(lim) {
		return 0, fmt.Errorf("%w: peer announced %d bytes, limit is %d", ErrFrameTooLarge, l, lim)
	}
	end := PrefixSize + int(l)
	if len(b) < end {
		return 0, nil
	}
	if err := env.parse(b[PrefixSize:end], known); err != nil {
		return 0, err
	}
	env.Len = end
	return end, nil
}

var errInvalidUTF8Field = errors.New("string field contains invalid UTF-8")

// parse decodes a herd.v1.Envelope from b (no prefix) into e. A procedure
// equal to known (valid UTF-8) is not checked again.
//
// The fields a frame usually has (numbers below 16, lengths and values
// below 128) take one byte of tag and one of length or value: parse reads
// those bytes itself and leaves longer ones to protowire, with the same
// results and errors. On error e's fields are unspecified.
func (e *Envelope) parse(b []byte, known []byte) error {
	// The fields every frame may have are collected here and stored once
	// at the end; the rare ones are reset only if set. Zeroing the whole
	// envelope, which the link keeps on the heap, and then storing its
	// slices again costs write barriers while the collector runs.
	if e.HasError || e.ErrorCode != 0 || e.ErrorMessage != nil {
		e.ErrorCode, e.ErrorMessage, e.HasError = 0, nil, false
	}
	if e.Metadata != nil || e.MetadataCount != 0 {
		e.Metadata, e.MetadataCount = nil, 0
	}
	if e.Owned != nil || e.Kept {
		e.Owned, e.Kept = nil, false // set by the link for large frames only
	}
	e.FDsLost, e.Len = 0, 0
	var (
		proc, payload   []byte
		callID, replyTo uint64
		flags, fdCount  uint32
		deadline        int64
		knownProc       bool
	)
	// The one-way stream's frame, read without the field loop (which
	// costs it about half of parse): the known procedure, then a payload
	// that ends the envelope, each with a one-byte tag and a one-byte
	// length (k < 0x80: a longer name's length takes two bytes). Any
	// other frame, or the rest of one that starts so, goes through the
	// loop, which keeps the last of repeated fields as before.
	const tagProc, tagPayload = fieldProcedure<<3 | 2, fieldPayload<<3 | 2
	if k := len(known); len(b) >= 2+k && b[0] == tagProc && int(b[1]) == k && k < 0x80 && string(b[2:2+k]) == string(known) {
		proc, knownProc, b = b[2:2+k], k > 0, b[2+k:]
		if len(b) >= 2 && b[0] == tagPayload && b[1] < 0x80 && int(b[1]) == len(b)-2 {
			payload, b = b[2:], nil
		}
	}
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protocolError("envelope", 0, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldProcedure && typ == protowire.BytesType:
			proc, n = consumeBytes(b)
			if n >= 0 {
				// A procedure equal to the last is the usual case, and
				// the link needs to know (KnownProcedure).
				knownProc = len(known) > 0 && string(proc) == string(known)
				if !knownProc && !utf8.Valid(proc) {
					return protocolError("envelope", num, errInvalidUTF8Field)
				}
			}
		case num == fieldCallID && typ == protowire.VarintType:
			callID, n = consumeVarint(b)
		case num == fieldReplyTo && typ == protowire.VarintType:
			replyTo, n = consumeVarint(b)
		case num == fieldFlags && typ == protowire.VarintType:
			var v uint64
			v, n = consumeVarint(b)
			flags = uint32(v)
		case num == fieldPayload && typ == protowire.BytesType:
			payload, n = consumeBytes(b)
		case num == fieldFDCount && typ == protowire.VarintType:
			var v uint64
			v, n = consumeVarint(b)
			fdCount = uint32(v)
		case num == fieldError && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				if err := e.parseError(v); err != nil {
					return err
				}
				e.HasError = true
			}
		case num == fieldDeadline && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			deadline = int64(v)
		case num == fieldMetadata && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				if err := e.parseMetadataEntry(v); err != nil {
					return err
				}
			}
		default:
			// Unknown field, or a known number with another wire type,
			// which proto.Unmarshal also treats as unknown.
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protocolError("envelope", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	e.Procedure, e.Payload, e.KnownProcedure = proc, payload, knownProc
	e.CallID, e.ReplyTo, e.Flags, e.FDCount, e.DeadlineUnixNano = callID, replyTo, flags, fdCount, deadline
	return nil
}

// parseError decodes a herd.v1.Error from b, merging into e's error fields.
func (e *Envelope) parseError(b []byte) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protocolError("error", 0, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldErrorCode && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			e.ErrorCode = int32(v)
		case num == fieldErrorMessage && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 && !utf8.Valid(v) {
				return protocolError("error", num, errInvalidUTF8Field)
			}
			e.ErrorMessage = v
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protocolError("error", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// parseMetadataEntry decodes one map entry of the metadata field and
// appends it to e.Metadata while there is room (MaxMetadataEntries); it
// counts every entry in e.MetadataCount. As in proto.Unmarshal, a missing
// key or value is empty and a repeated one keeps its last value.
func (e *Envelope) parseMetadataEntry(b []byte) error {
	var key, value []byte
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protocolError("metadata entry", 0, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case (num == fieldMetadataKey || num == fieldMetadataValue) && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 && !utf8.Valid(v) {
				return protocolError("metadata entry", num, errInvalidUTF8Field)
			}
			if num == fieldMetadataKey {
				key = v
			} else {
				value = v
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protocolError("metadata entry", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	e.MetadataCount++
	if len(e.Metadata) < MaxMetadataEntries {
		e.Metadata = append(e.Metadata, MetadataEntry{Key: key, Value: value})
	}
	return nil
}

// consumeTag is protowire.ConsumeTag that also rejects field numbers above
// protowire.MaxValidNumber, as proto.Unmarshal does for a message's own
// fields (protowire.ConsumeTag checks only the lower bound). A one-byte
// tag is read here.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] < 0x80 {
		num, typ := protowire.DecodeTag(uint64(b[0]))
		if num < protowire.MinValidNumber {
			return 0, 0, -2 // protowire.ParseError(-2) is "invalid field number"
		}
		return num, typ, 1
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -2 // protowire.ParseError(-2) is "invalid field number"
	}
	return num, typ, n
}

// protocolError builds the *ProtocolError for a malformed field of msg.
func protocolError(msg string, num protowire.Number, cause error) error {
	if num == 0 {
		return &ProtocolError{Cause: fmt.Errorf("decoding %s: %w", msg, cause)}
	}
	return &ProtocolError{Cause: fmt.Errorf("decoding %s field %d: %w", msg, num, cause)}
}

// consumeVarint is protowire.ConsumeVarint, a one-byte varint read here.
func consumeVarint(b []byte) (uint64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	return protowire.ConsumeVarint(b)
}

// consumeBytes is protowire.ConsumeBytes, a one-byte length read here.
func consumeBytes(b []byte) ([]byte, int) {
	if len(b) > 0 && b[0] < 0x80 {
		m := int(b[0])
		if m > len(b)-1 {
			return nil, -1 // protowire.ParseError(-1) is io.ErrUnexpectedEOF
		}
		return b[1 : 1+m], 1 + m
	}
	return protowire.ConsumeBytes(b)
}
