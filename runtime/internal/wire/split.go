package wire

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// SplitMinSize is the smallest bytes field AppendFrameSplit leaves out of
// the frame buffer. Below it, copying the field costs less than the
// reflection that splits it off.
const SplitMinSize = 64 << 10

// AppendFrameSplit is AppendFrame for a sender that writes the frame with
// writev(2) right away: when the payload message has a singular bytes field
// of its own (not repeated, not an extension, not in a nested message) of
// SplitMinSize bytes or more, the field's contents are not copied into dst.
// The frame is then b[len(dst):at], followed by ext (the field's own
// slice, not a copy), followed by b[at:]. Otherwise ext is nil and b is
// AppendFrame's result.
//
// A split frame encodes the message with that field last, after the
// others and any unknown fields, instead of in field-number order. Every
// protobuf decoder accepts fields in any order (a message is the merge of
// its fields), and the frame has the same length; it is not byte-identical
// to proto.Marshal's encoding. The largest such field is split off when
// there are several.
//
// ext aliases the caller's message: it is valid only as long as the
// message is not modified, so the caller must write it (or copy it) before
// returning to its own caller. Errors are AppendFrame's.
func AppendFrameSplit(dst []byte, h *Header, payload proto.Message, maxFrame int) (b, ext []byte, at int, err error) {
	if h == nil {
		h = &zeroHeader
	}
	f, err := SizeFrame(h, payload, maxFrame)
	if err != nil {
		// A split frame is as long as the whole one: too large either way.
		return dst, nil, 0, err
	}
	var fd protoreflect.FieldDescriptor
	if payload != nil && f.pn >= SplitMinSize {
		fd, ext = largestBytesField(payload.ProtoReflect())
	}
	if fd == nil {
		b, err = f.AppendTo(dst, h)
		return b, nil, 0, err
	}
	rest := without(payload.ProtoReflect(), fd)
	rn := proto.Size(rest)
	pn := rn + protowire.SizeTag(fd.Number()) + protowire.SizeBytes(len(ext))
	size, err := envelopeSize(h, pn, maxFrame)
	if err != nil {
		return dst, nil, 0, err
	}
	b = appendHead(slices.Grow(dst, PrefixSize+size-len(ext)), h, size)
	b = protowire.AppendTag(b, fieldPayload, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(pn))
	start := len(b)
	b, err = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, rest)
	if err != nil {
		return dst, nil, 0, fmt.Errorf("herd: encoding payload %s: %w", payload.ProtoReflect().Descriptor().FullName(), err)
	}
	if len(b)-start != rn {
		return dst, nil, 0, errPayloadChanged
	}
	b = protowire.AppendTag(b, fd.Number(), protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(ext)))
	return appendTail(b, h), ext, len(b), nil
}

// largestBytesField returns m's largest singular bytes field of at least
// SplitMinSize bytes, and its value, or nil.
func largestBytesField(m protoreflect.Message) (protoreflect.FieldDescriptor, []byte) {
	var best protoreflect.FieldDescriptor
	var v []byte
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Kind() != protoreflect.BytesKind || fd.IsList() || !m.Has(fd) {
			continue
		}
		if b := m.Get(fd).Bytes(); len(b) >= SplitMinSize && len(b) > len(v) {
			best, v = fd, b
		}
	}
	return best, v
}

// without returns a new message of m's type holding every field of m but
// fd, and m's unknown fields. It is a shallow copy: its fields share m's
// memory (bytes, lists, maps, nested messages), and it is only read.
func without(m protoreflect.Message, fd protoreflect.FieldDescriptor) proto.Message {
	rest := m.New()
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if f != fd {
			rest.Set(f, v)
		}
		return true
	})
	if u := m.GetUnknown(); len(u) > 0 {
		rest.SetUnknown(u)
	}
	return rest.Interface()
}
