package runtime

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Decoding flat requests without proto.Unmarshal.
//
// Most requests are flat: a few numbers, strings and byte strings. For
// those, proto.Unmarshal's generic machinery is most of the decoding's
// cost: it first stores the message's type information into the new
// message (ProtoReflect, an atomic store per message), then looks each
// field's decoder up and calls it through a function pointer, then checks
// required fields. A flatDecoder, built once per request type from its
// descriptor (protoreflect) and its Go struct (reflect), decodes such a
// message itself: one loop over the fields, set with reflect. It uses only
// public APIs: the fields it sets are the message's exported Go fields,
// which the generated code's struct tags map to field numbers.
//
// It decodes only what it is sure to decode exactly as proto.Unmarshal
// would (into a new message, as UnmarshalOptions{Merge: true} does): a
// message whose every field is known, with the expected wire type. Anything
// else (an unknown field, which proto.Unmarshal keeps in the message's
// unknown fields; a wrong wire type; a malformed field; invalid UTF-8 in a
// string) makes it give up, leave the message zero, and the caller decodes
// the message with proto.Unmarshal, which keeps what it must and reports
// the errors it reports.
//
// Which types: proto3 messages of the open struct API (generated fields;
// not the opaque API, whose fields are unexported) whose fields are all
// singular, without presence (no optional, no oneof), of a scalar kind,
// string, bytes or enum, with field numbers up to maxFlatField. Others
// have no flatDecoder (newFlatDecoder returns nil).

// maxFlatField bounds the field numbers of a flat message: the decoder
// finds a field by number in a table of this size at most.
const maxFlatField = 1024

// flatDecoder decodes messages of one flat type.
type flatDecoder struct {
	// fields is indexed by field number; a field's wire type is 0 for
	// numbers the message does not have (no valid field has wire type
	// 0 and kind 0: see flatField.kind).
	fields []flatField
	// set are the indexes of the Go struct's fields the decoder sets,
	// zeroed when it gives up.
	set []int
}

// flatField is how one field is decoded.
type flatField struct {
	kind  protoreflect.Kind // 0 for a number the message does not have
	wtyp  protowire.Type
	index int // of the Go struct's field
}

// newFlatDecoder returns the decoder of m's type, nil when the type is not
// flat (see above).
func newFlatDecoder(m proto.Message) *flatDecoder {
	md := m.ProtoReflect().Descriptor()
	if md.ParentFile() == nil || md.ParentFile().Syntax() != protoreflect.Proto3 {
		return nil
	}
	t := reflect.TypeOf(m)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	t = t.Elem()
	// The Go fields by field number, from the generated struct tags
	// (`protobuf:"varint,2,opt,name=seq,proto3"`); any Go field that is
	// neither one of those nor the generated code's own bookkeeping (whose
	// zero value is what a new message has) makes the type not flat.
	byNumber := make(map[protowire.Number]int)
	for i := range t.NumField() {
		sf := t.Field(i)
		switch sf.Name {
		case "state", "sizeCache", "unknownFields":
			continue
		}
		num, ok := tagNumber(sf.Tag.Get("protobuf"))
		if !ok || !sf.IsExported() {
			return nil
		}
		byNumber[num] = i
	}
	fds := md.Fields()
	if fds.Len() != len(byNumber) || md.Oneofs().Len() > 0 || md.ExtensionRanges().Len() > 0 {
		return nil
	}
	d := &flatDecoder{}
	for i := range fds.Len() {
		fd := fds.Get(i)
		if fd.Cardinality() != protoreflect.Optional || fd.HasPresence() || fd.IsMap() || fd.IsList() || fd.Number() > maxFlatField {
			return nil
		}
		index, ok := byNumber[fd.Number()]
		if !ok {
			return nil
		}
		wtyp, gokind, ok := flatKind(fd.Kind())
		ft := t.Field(index).Type
		if !ok || ft.Kind() != gokind || gokind == reflect.Slice && ft.Elem().Kind() != reflect.Uint8 {
			return nil
		}
		if v, ok := fd.(interface{ EnforceUTF8() bool }); ok && fd.Kind() == protoreflect.StringKind && !v.EnforceUTF8() {
			// A proto3 string field protobuf-go does not validate
			// (only with its protolegacy build tag): not the decoder's.
			return nil
		}
		if int(fd.Number()) >= len(d.fields) {
			d.fields = append(d.fields, make([]flatField, int(fd.Number())+1-len(d.fields))...)
		}
		d.fields[fd.Number()] = flatField{kind: fd.Kind(), wtyp: wtyp, index: index}
		d.set = append(d.set, index)
	}
	return d
}

// tagNumber returns the field number of a generated struct tag.
func tagNumber(tag string) (protowire.Number, bool) {
	parts := strings.Split(tag, ",")
	if len(parts) < 2 {
		return 0, false
	}
	n, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil || n <= 0 {
		return 0, false
	}
	return protowire.Number(n), true
}

// flatKind returns the wire type of a field of kind k and the kind of its
// Go field, and whether k is one a flatDecoder decodes.
func flatKind(k protoreflect.Kind) (protowire.Type, reflect.Kind, bool) {
	switch k {
	case protoreflect.BoolKind:
		return protowire.VarintType, reflect.Bool, true
	case protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind:
		return protowire.VarintType, reflect.Int32, true
	case protoreflect.Uint32Kind:
		return protowire.VarintType, reflect.Uint32, true
	case protoreflect.Int64Kind, protoreflect.Sint64Kind:
		return protowire.VarintType, reflect.Int64, true
	case protoreflect.Uint64Kind:
		return protowire.VarintType, reflect.Uint64, true
	case protoreflect.Sfixed32Kind:
		return protowire.Fixed32Type, reflect.Int32, true
	case protoreflect.Fixed32Kind:
		return protowire.Fixed32Type, reflect.Uint32, true
	case protoreflect.FloatKind:
		return protowire.Fixed32Type, reflect.Float32, true
	case protoreflect.Sfixed64Kind:
		return protowire.Fixed64Type, reflect.Int64, true
	case protoreflect.Fixed64Kind:
		return protowire.Fixed64Type, reflect.Uint64, true
	case protoreflect.DoubleKind:
		return protowire.Fixed64Type, reflect.Float64, true
	case protoreflect.StringKind:
		return protowire.BytesType, reflect.String, true
	case protoreflect.BytesKind:
		return protowire.BytesType, reflect.Slice, true
	}
	return 0, 0, false
}

// decode decodes b into m, a new (zero) message of the decoder's type, as
// proto.UnmarshalOptions{Merge: true}.Unmarshal would, and reports true;
// or reports false, with m left zero, when b holds anything the decoder
// leaves to proto.Unmarshal (see above).
func (d *flatDecoder) decode(m proto.Message, b []byte) bool {
	v := reflect.ValueOf(m).Elem()
	for len(b) > 0 {
		num, wtyp, n := protowire.ConsumeTag(b)
		if n < 0 || int(num) >= len(d.fields) {
			return d.giveUp(v)
		}
		f := &d.fields[num]
		if f.kind == 0 || f.wtyp != wtyp {
			return d.giveUp(v)
		}
		b = b[n:]
		fv := v.Field(f.index)
		switch wtyp {
		case protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return d.giveUp(v)
			}
			b = b[n:]
			// As protobuf-go's decoders (internal/impl/codec_gen.go).
			switch f.kind {
			case protoreflect.BoolKind:
				fv.SetBool(protowire.DecodeBool(x))
			case protoreflect.EnumKind, protoreflect.Int32Kind:
				fv.SetInt(int64(int32(x)))
			case protoreflect.Sint32Kind:
				fv.SetInt(int64(int32(protowire.DecodeZigZag(x & math.MaxUint32))))
			case protoreflect.Uint32Kind:
				fv.SetUint(uint64(uint32(x)))
			case protoreflect.Int64Kind:
				fv.SetInt(int64(x))
			case protoreflect.Sint64Kind:
				fv.SetInt(protowire.DecodeZigZag(x))
			default: // Uint64Kind
				fv.SetUint(x)
			}
		case protowire.Fixed32Type:
			x, n := protowire.ConsumeFixed32(b)
			if n < 0 {
				return d.giveUp(v)
			}
			b = b[n:]
			switch f.kind {
			case protoreflect.Sfixed32Kind:
				fv.SetInt(int64(int32(x)))
			case protoreflect.FloatKind:
				fv.SetFloat(float64(math.Float32frombits(x)))
			default: // Fixed32Kind
				fv.SetUint(uint64(x))
			}
		case protowire.Fixed64Type:
			x, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return d.giveUp(v)
			}
			b = b[n:]
			switch f.kind {
			case protoreflect.Sfixed64Kind:
				fv.SetInt(int64(x))
			case protoreflect.DoubleKind:
				fv.SetFloat(math.Float64frombits(x))
			default: // Fixed64Kind
				fv.SetUint(x)
			}
		default: // BytesType
			x, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return d.giveUp(v)
			}
			b = b[n:]
			if f.kind == protoreflect.StringKind {
				if !utf8.Valid(x) {
					return d.giveUp(v)
				}
				fv.SetString(string(x))
			} else {
				// A copy, as protobuf-go makes: nil for an empty
				// value.
				fv.SetBytes(append([]byte(nil), x...))
			}
		}
	}
	return true
}

// giveUp zeroes what decode set in v and returns false.
func (d *flatDecoder) giveUp(v reflect.Value) bool {
	for _, i := range d.set {
		v.Field(i).SetZero()
	}
	return false
}
