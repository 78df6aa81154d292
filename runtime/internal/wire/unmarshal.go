package wire

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// AliasMinSize is the smallest bytes field Unmarshal lets a message share
// with an owned buffer instead of copying it. Below it a copy costs less
// than splitting the decode around the field.
const AliasMinSize = 16 << 10

// aliasMin is AliasMinSize, lowered by tests (the fuzzer) to reach the
// aliasing path with small inputs.
var aliasMin = AliasMinSize

// unmarshalSegment decodes one run of fields into a message that already
// holds the fields before it: the wire format's concatenation rule makes a
// sequence of merges equal to one decode of the whole. Required fields are
// checked once, at the end, across all the runs.
var unmarshalSegment = proto.UnmarshalOptions{Merge: true, AllowPartial: true}

// UnmarshalPayload decodes env.Payload into m, as proto.Unmarshal does.
// When env is Owned, m may share the frame's buffer (see Unmarshal), and
// if it does UnmarshalPayload sets env.Kept, so that the link gives the
// buffer up instead of reusing it.
func UnmarshalPayload(env *Envelope, m proto.Message) error {
	aliased, err := Unmarshal(env.Payload, m, env.Owned != nil)
	if aliased {
		env.Kept = true
	}
	return err
}

// Unmarshal decodes the encoded message b into m, as proto.Unmarshal does,
// and reports whether it set a field of m to a slice of b (m may share b's
// memory; a later field of the same oneof can replace that one). When alias is true, b belongs
// to the caller for good (the payload of an Owned envelope) and m may keep
// parts of it: each singular bytes field of m's own (not of a nested
// message, not repeated, not an extension) of AliasMinSize bytes or more
// is set to a slice of b, capped at its length, instead of a copy.
// protobuf-go always copies bytes fields (protoiface.UnmarshalAliasBuffer
// does not apply to them), so a 1 MiB payload would otherwise be copied
// once more, into freshly allocated memory, after the kernel has copied it
// into b.
//
// The result is the message proto.Unmarshal would produce: the fields
// between aliased ones are merged in stream order, so a field that occurs
// twice keeps its last value and a oneof keeps its last member; unknown
// fields are kept; required fields are checked once everything is decoded.
// Malformed input is an error, as in proto.Unmarshal; m may then share b.
func Unmarshal(b []byte, m proto.Message, alias bool) (aliased bool, err error) {
	if !alias || len(b) < aliasMin {
		return false, proto.Unmarshal(b, m)
	}
	proto.Reset(m)
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	start := 0 // the first byte not yet decoded
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			break // the decode of the rest reports it
		}
		if typ == protowire.BytesType {
			v, vn := protowire.ConsumeBytes(b[i+n:])
			if vn < 0 {
				break
			}
			if len(v) >= aliasMin {
				if fd := fields.ByNumber(num); fd != nil && fd.Kind() == protoreflect.BytesKind && fd.Cardinality() != protoreflect.Repeated {
					if err := unmarshalSegment.Unmarshal(b[start:i], m); err != nil {
						return aliased, err
					}
					// Set keeps the slice it is given (no copy).
					r.Set(fd, protoreflect.ValueOfBytes(v[:len(v):len(v)]))
					aliased = true
					start = i + n + vn
				}
			}
			i += n + vn
			continue
		}
		vn := protowire.ConsumeFieldValue(num, typ, b[i+n:])
		if vn < 0 {
			break
		}
		i += n + vn
	}
	if err := unmarshalSegment.Unmarshal(b[start:], m); err != nil {
		return aliased, err
	}
	return aliased, proto.CheckInitialized(m)
}
