package wire_test

import (
	"bytes"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// blobType is a proto2 message with every kind of field the aliasing path
// must tell apart:
//
//	message Blob {
//	  optional bytes data = 1;
//	  repeated bytes chunks = 2;
//	  oneof choice { bytes raw = 3; string text = 4; }
//	  optional Blob inner = 5;
//	  optional int64 n = 6;
//	  required int32 must = 7;
//	  optional string name = 8;
//	}
var blobType = func() protoreflect.MessageType {
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, label *descriptorpb.FieldDescriptorProto_Label) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(), Label: label}
	}
	inner := field("inner", 5, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, opt)
	inner.TypeName = proto.String(".herd.wiretest.Blob")
	raw := field("raw", 3, descriptorpb.FieldDescriptorProto_TYPE_BYTES, opt)
	raw.OneofIndex = proto.Int32(0)
	text := field("text", 4, descriptorpb.FieldDescriptorProto_TYPE_STRING, opt)
	text.OneofIndex = proto.Int32(0)
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("herd/wiretest/blob.proto"),
		Package: proto.String("herd.wiretest"),
		Syntax:  proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Blob"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("data", 1, descriptorpb.FieldDescriptorProto_TYPE_BYTES, opt),
				field("chunks", 2, descriptorpb.FieldDescriptorProto_TYPE_BYTES, descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()),
				raw, text, inner,
				field("n", 6, descriptorpb.FieldDescriptorProto_TYPE_INT64, opt),
				field("must", 7, descriptorpb.FieldDescriptorProto_TYPE_INT32, descriptorpb.FieldDescriptorProto_LABEL_REQUIRED.Enum()),
				field("name", 8, descriptorpb.FieldDescriptorProto_TYPE_STRING, opt),
			},
			OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("choice")}},
		}},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		panic(err)
	}
	return dynamicpb.NewMessageType(fd.Messages().Get(0))
}()

func newBlob() proto.Message { return blobType.New().Interface() }

// within reports whether v's bytes lie inside b.
func within(v, b []byte) bool {
	if len(v) == 0 || len(b) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(unsafe.SliceData(v))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p+uintptr(len(v)) <= lo+uintptr(len(b))
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// TestUnmarshalAliasesLargeBytes: a generated message's large bytes field
// shares the owned buffer, capped at its length, and equals what
// proto.Unmarshal decodes; without ownership, or below the size, it is a
// copy.
func TestUnmarshalAliasesLargeBytes(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), wire.AliasMinSize/16*4)
	b, err := proto.Marshal(&testv1.PayloadRequest{Data: data, ResponseSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	var got testv1.PayloadRequest
	if aliased, err := wire.Unmarshal(b, &got, true); err != nil || !aliased {
		t.Fatalf("Unmarshal = %v, %v; want true, nil", aliased, err)
	}
	if !bytes.Equal(got.GetData(), data) || got.GetResponseSize() != 7 {
		t.Fatalf("decoded %d bytes, size %d; want %d bytes, size 7", len(got.GetData()), got.GetResponseSize(), len(data))
	}
	if !within(got.GetData(), b) {
		t.Fatal("owned buffer: data is a copy, want a slice of the buffer")
	}
	if cap(got.GetData()) != len(data) {
		t.Fatalf("aliased data has capacity %d, want %d (appending must not overwrite the buffer)", cap(got.GetData()), len(data))
	}

	var copied testv1.PayloadRequest
	if aliased, err := wire.Unmarshal(b, &copied, false); err != nil || aliased {
		t.Fatalf("Unmarshal = %v, %v; want false, nil", aliased, err)
	}
	if within(copied.GetData(), b) || !bytes.Equal(copied.GetData(), data) {
		t.Fatal("buffer not owned: data must be a copy")
	}

	small, _ := proto.Marshal(&testv1.PayloadRequest{Data: data[:wire.AliasMinSize-1]})
	var s testv1.PayloadRequest
	if aliased, err := wire.Unmarshal(small, &s, true); err != nil || aliased {
		t.Fatalf("Unmarshal = %v, %v; want false, nil", aliased, err)
	}
	if within(s.GetData(), small) {
		t.Fatal("a field below AliasMinSize was aliased")
	}
}

// TestUnmarshalMatchesProto: on encodings that repeat, reorder and mix
// fields, the aliasing decode gives exactly what proto.Unmarshal gives,
// and the large bytes fields it keeps are slices of the buffer.
func TestUnmarshalMatchesProto(t *testing.T) {
	big := func(c byte) []byte { return bytes.Repeat([]byte{c}, wire.AliasMinSize+3) }
	must := func(b []byte) []byte { return appendVarintField(b, 7, 1) }
	innerBlob := appendBytesField(must(nil), 1, big('i')) // nested: never aliased
	cases := []struct {
		name    string
		b       []byte
		aliased []protowire.Number // fields whose final value must alias b
	}{
		{"one large field", must(appendBytesField(nil, 1, big('a'))), []protowire.Number{1}},
		{"small fields around a large one", appendBytesField(appendVarintField(must(appendBytesField(appendVarintField(nil, 6, 42), 1, big('a'))), 6, 43), 8, []byte("name")), []protowire.Number{1}},
		{"large field twice, last wins", must(appendBytesField(appendBytesField(nil, 1, big('a')), 1, big('b'))), []protowire.Number{1}},
		{"large then small, small wins", must(appendBytesField(appendBytesField(nil, 1, big('a')), 1, []byte("x"))), nil},
		{"repeated bytes are copied", must(appendBytesField(appendBytesField(nil, 2, big('a')), 2, big('b'))), nil},
		{"oneof: large raw then text", must(appendBytesField(appendBytesField(nil, 3, big('r')), 4, []byte("t"))), nil},
		{"oneof: text then large raw", must(appendBytesField(appendBytesField(nil, 4, []byte("t")), 3, big('r'))), []protowire.Number{3}},
		{"nested message", must(appendBytesField(appendBytesField(nil, 1, big('o')), 5, innerBlob)), []protowire.Number{1}},
		{"unknown large field kept", must(appendBytesField(appendBytesField(nil, 99, big('u')), 1, big('a'))), []protowire.Number{1}},
		{"large string field is not bytes", must(appendBytesField(nil, 8, big('s'))), nil},
		{"large field before the required one", appendVarintField(appendBytesField(nil, 1, big('a')), 7, 5), []protowire.Number{1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, got := newBlob(), newBlob()
			if err := proto.Unmarshal(c.b, want); err != nil {
				t.Fatalf("proto.Unmarshal: %v", err)
			}
			// Garbage in got first: Unmarshal must reset it.
			got.ProtoReflect().Set(blobType.Descriptor().Fields().ByNumber(6), protoreflect.ValueOfInt64(-1))
			aliased, err := wire.Unmarshal(c.b, got, true)
			if err != nil {
				t.Fatalf("wire.Unmarshal: %v", err)
			}
			if len(c.aliased) > 0 && !aliased {
				t.Fatal("Unmarshal reported no aliasing")
			}
			if !proto.Equal(got, want) {
				t.Fatal("decoded message differs from proto.Unmarshal's")
			}
			for _, num := range c.aliased {
				v := got.ProtoReflect().Get(blobType.Descriptor().Fields().ByNumber(num)).Bytes()
				if !within(v, c.b) {
					t.Fatalf("field %d is a copy, want a slice of the buffer", num)
				}
			}
			// Only the fields named are aliased.
			fields := blobType.Descriptor().Fields()
			for i := range fields.Len() {
				fd := fields.Get(i)
				if fd.Kind() != protoreflect.BytesKind || fd.IsList() || !got.ProtoReflect().Has(fd) {
					continue
				}
				named := false
				for _, num := range c.aliased {
					named = named || num == fd.Number()
				}
				if v := got.ProtoReflect().Get(fd).Bytes(); within(v, c.b) != named {
					t.Fatalf("field %d aliased %v, want %v", fd.Number(), !named, named)
				}
			}
		})
	}
}

// TestUnmarshalErrors: input proto.Unmarshal refuses is refused too,
// including a missing required field and damage after an aliased field.
func TestUnmarshalErrors(t *testing.T) {
	big := bytes.Repeat([]byte{'a'}, wire.AliasMinSize)
	ok := appendVarintField(appendBytesField(nil, 1, big), 7, 1)
	cases := map[string][]byte{
		"required field missing":     appendBytesField(nil, 1, big),
		"truncated after large":      append(appendBytesField(nil, 1, big), 0x38),
		"length past the end":        append(append([]byte(nil), ok...), 0x0a, 0xff, 0x01),
		"end group at top level":     append(append([]byte(nil), ok...), 0x0c),
		"field number zero":          append(append([]byte(nil), ok...), 0x00, 0x01),
		"large field cut short":      ok[:len(ok)-10],
		"wrong wire type for bytes":  append(appendVarintField(nil, 1, 5), ok...),
		"field number too large":     append(append([]byte(nil), ok...), protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.VarintType)...),
		"invalid utf-8 in string 8":  appendBytesField(append([]byte(nil), ok...), 8, []byte{0xff}),
		"nested required is missing": appendBytesField(append([]byte(nil), ok...), 5, appendBytesField(nil, 1, big)),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			werr := proto.Unmarshal(b, newBlob())
			_, gerr := wire.Unmarshal(b, newBlob(), true)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("proto.Unmarshal: %v; wire.Unmarshal: %v", werr, gerr)
			}
		})
	}
	if _, err := wire.Unmarshal(appendBytesField(nil, 1, big), newBlob(), true); err == nil {
		t.Fatal("missing required field accepted")
	}
}

// FuzzUnmarshal: with every bytes field aliased (however small), the
// aliasing decode agrees with proto.Unmarshal on any input: both refuse
// it, or both produce equal messages. Seeds live in
// testdata/fuzz/FuzzUnmarshal.
func FuzzUnmarshal(f *testing.F) {
	f.Add(appendVarintField(appendBytesField(nil, 1, []byte("hello")), 7, 1))
	f.Add(appendBytesField(appendBytesField(appendVarintField(nil, 7, 1), 3, []byte("r")), 4, []byte("t")))
	f.Add(appendBytesField(appendVarintField(nil, 7, 1), 5, appendBytesField(appendVarintField(nil, 7, 2), 1, []byte("in"))))
	f.Fuzz(func(t *testing.T, b []byte) {
		defer wire.SetAliasMin(1)()
		for _, mk := range []func() proto.Message{newBlob, func() proto.Message { return new(testv1.PayloadRequest) }} {
			want, got := mk(), mk()
			werr := proto.Unmarshal(b, want)
			_, gerr := wire.Unmarshal(b, got, true)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("proto.Unmarshal: %v; wire.Unmarshal: %v", werr, gerr)
			}
			if werr == nil && !proto.Equal(got, want) {
				t.Fatalf("decoded %v, proto.Unmarshal decoded %v", got, want)
			}
		}
	})
}

// TestUnmarshalPayloadSetsKept: decoding an Owned envelope's payload into a
// message that shares it marks the envelope Kept; a copy does not.
func TestUnmarshalPayloadSetsKept(t *testing.T) {
	big, _ := proto.Marshal(&testv1.PayloadRequest{Data: make([]byte, wire.AliasMinSize)})
	small, _ := proto.Marshal(&testv1.PayloadRequest{ResponseSize: 1})
	for _, c := range []struct {
		payload     []byte
		owned, kept bool
	}{{big, true, true}, {big, false, false}, {small, true, false}} {
		env := wire.Envelope{Payload: c.payload}
		if c.owned {
			env.Owned = c.payload
		}
		if err := wire.UnmarshalPayload(&env, new(testv1.PayloadRequest)); err != nil {
			t.Fatal(err)
		}
		if env.Kept != c.kept {
			t.Fatalf("%d bytes, owned %v: Kept = %v, want %v", len(c.payload), c.owned, env.Kept, c.kept)
		}
	}
}
