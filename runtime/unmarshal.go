package runtime

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/runtime/protoiface"
)

// Decoding a request on the link's reader.
//
// proto.UnmarshalOptions.Unmarshal looks up the message's fast-path
// methods through its reflection interface on every call, then fills in
// its defaults; for a stream of small messages of one type that is a fifth
// of the decoding. A Handler looks the methods up once (generated messages
// of one type share them) and calls them directly with what
// UnmarshalOptions{Merge: true} would pass: the same result, the same
// errors.

// unmarshalFunc is a message type's fast-path unmarshal method.
type unmarshalFunc = func(protoiface.UnmarshalInput) (protoiface.UnmarshalOutput, error)

// fastUnmarshal returns m's fast-path unmarshal method, nil if its type has
// none (then proto.Unmarshal's reflection path is used).
func fastUnmarshal(m proto.Message) unmarshalFunc {
	methods := m.ProtoReflect().ProtoMethods()
	if methods == nil {
		return nil
	}
	return methods.Unmarshal
}

// unmarshalMerge decodes b into m, a new (zero) message of the type fn was
// looked up for, as proto.UnmarshalOptions{Merge: true}.Unmarshal would:
// through fn when not nil, with the default resolver and recursion limit,
// required fields checked.
func unmarshalMerge(fn unmarshalFunc, b []byte, m proto.Message) error {
	if fn == nil {
		return proto.UnmarshalOptions{Merge: true}.Unmarshal(b, m)
	}
	out, err := fn(protoiface.UnmarshalInput{
		Message:  m.ProtoReflect(),
		Buf:      b,
		Resolver: protoregistry.GlobalTypes,
		Depth:    protowire.DefaultRecursionLimit,
		Flags:    protoiface.UnmarshalCheckRequired,
	})
	if err != nil {
		return err
	}
	if out.Flags&protoiface.UnmarshalInitialized == 0 {
		return proto.CheckInitialized(m)
	}
	return nil
}

// decodeRequest decodes b into m, a new (zero) request of h's type: by
// h's flat decoder when the message is one it decodes (fastdecode.go),
// else as unmarshalMerge.
func (h *Handler) decodeRequest(b []byte, m proto.Message) error {
	if h.flat != nil && h.flat.decode(m, b) {
		return nil
	}
	return unmarshalMerge(h.unmarshal, b, m)
}
