package runtime

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
)

// TestFlatDecoderTypes: the runtime decodes flat proto3 messages itself,
// and leaves every other message to proto.Unmarshal. It fails if a type
// with a field the flat decoder cannot decode exactly (nested, repeated,
// optional, oneof, map, proto2) gets one, or a flat type gets none.
func TestFlatDecoderTypes(t *testing.T) {
	for _, m := range []proto.Message{
		&testv1.Scalars{}, &testv1.ReportRequest{}, &testv1.EchoRequest{}, &testv1.ReportResponse{},
		&testv1.FailRequest{}, &wrapperspb.StringValue{},
	} {
		if newFlatDecoder(m) == nil {
			t.Errorf("%T: no flat decoder", m)
		}
	}
	for _, m := range []proto.Message{
		&testv1.WithNested{}, &testv1.WithRepeated{}, &testv1.WithOptional{}, &testv1.WithOneof{},
		&testv1.WithMap{}, &testv1.FilesRequest{}, &descriptorpb.FieldOptions{}, &structpb.Value{},
	} {
		if newFlatDecoder(m) != nil {
			t.Errorf("%T: a flat decoder", m)
		}
	}
}

// TestFlatDecodeMatchesUnmarshal: on many generated inputs, valid or not,
// with every field kind, duplicates, unknown fields, wrong wire types,
// truncated and overlong values and invalid UTF-8, the flat decoder either
// gives the very message proto.Unmarshal gives (each Go field equal,
// nil-ness of bytes included) or gives up with the message zero; and it
// never gives up on a message of known fields that proto.Unmarshal decodes
// without error. It fails on any decoding that differs from protobuf-go's.
func TestFlatDecodeMatchesUnmarshal(t *testing.T) {
	d := newFlatDecoder(&testv1.Scalars{})
	r := rand.New(rand.NewPCG(1, 2))
	decoded := 0
	for range 200000 {
		b, clean := randomScalars(r)
		if checkFlatDecode(t, d, b, clean) {
			decoded++
		}
		if t.Failed() {
			t.Fatalf("input %x", b)
		}
	}
	if decoded < 50000 {
		t.Fatalf("the flat decoder decoded %d of 200000 inputs, want most of the clean ones", decoded)
	}
}

// FuzzFlatDecode is TestFlatDecodeMatchesUnmarshal on any input.
func FuzzFlatDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b, _ := randomScalars(r)
		f.Add(b)
	}
	d := newFlatDecoder(&testv1.Scalars{})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFlatDecode(t, d, b, false)
	})
}

// checkFlatDecode decodes b with d and with proto.Unmarshal and compares
// (see TestFlatDecodeMatchesUnmarshal); clean says b has only known fields
// of the right wire types, so that the flat decoder must not give up
// unless proto.Unmarshal fails. It reports whether d decoded b.
func checkFlatDecode(t *testing.T, d *flatDecoder, b []byte, clean bool) bool {
	t.Helper()
	want := &testv1.Scalars{}
	werr := proto.Unmarshal(b, want)
	got := &testv1.Scalars{}
	in := bytes.Clone(b)
	ok := d.decode(got, in)
	clear(in) // what the decoder kept must not share the input
	if !ok {
		if !reflect.DeepEqual(exportedFields(got), exportedFields(&testv1.Scalars{})) {
			t.Errorf("gave up and left %v", got)
		}
		if clean && werr == nil {
			t.Errorf("gave up on a clean message proto.Unmarshal decodes: %v", want)
		}
		return false
	}
	if werr != nil {
		t.Errorf("decoded %v where proto.Unmarshal fails: %v", got, werr)
		return true
	}
	if g, w := exportedFields(got), exportedFields(want); !reflect.DeepEqual(g, w) {
		t.Errorf("decoded %#v, proto.Unmarshal %#v", g, w)
	}
	if len(want.ProtoReflect().GetUnknown()) > 0 {
		t.Errorf("decoded a message with unknown fields: %v", want)
	}
	if !proto.Equal(got, want) {
		t.Errorf("proto.Equal: decoded %v, proto.Unmarshal %v", got, want)
	}
	return true
}

// exportedFields returns the exported Go fields of a message, for
// reflect.DeepEqual (the message's own state differs: proto.Unmarshal
// sets it), floats as their bits.
func exportedFields(m *testv1.Scalars) []any {
	v := reflect.ValueOf(m).Elem()
	var out []any
	for i := range v.NumField() {
		switch f := v.Field(i); {
		case !v.Type().Field(i).IsExported():
		case f.Kind() == reflect.Float32:
			out = append(out, math.Float32bits(float32(f.Float()))) // NaN too
		case f.Kind() == reflect.Float64:
			out = append(out, math.Float64bits(f.Float()))
		default:
			out = append(out, f.Interface())
		}
	}
	return out
}

// randomScalars returns an encoded testv1.Scalars of random fields, some
// repeated, and, in one input of four, something the flat decoder leaves
// to proto.Unmarshal; clean reports it has none.
func randomScalars(r *rand.Rand) (b []byte, clean bool) {
	numbers := []protowire.Number{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1000}
	clean = true
	for range r.IntN(12) {
		num := numbers[r.IntN(len(numbers))]
		b = appendScalarsField(r, b, num)
	}
	if r.IntN(4) == 0 {
		clean = false
		switch r.IntN(8) {
		case 0: // an unknown field
			b = protowire.AppendTag(b, protowire.Number(17+r.IntN(2000)), protowire.VarintType)
			b = protowire.AppendVarint(b, r.Uint64())
		case 1: // a known field of the wrong wire type
			b = protowire.AppendTag(b, numbers[r.IntN(len(numbers))], protowire.Fixed32Type)
			b = protowire.AppendFixed32(b, r.Uint32())
		case 2: // invalid UTF-8 in the string
			b = protowire.AppendTag(b, 14, protowire.BytesType)
			b = protowire.AppendBytes(b, []byte{'a', 0xff, 'b'})
		case 3: // truncated
			if len(b) > 0 {
				b = b[:r.IntN(len(b))]
			}
		case 4: // field number 0
			b = append(b, 0x00, 0x01)
		case 5: // an overlong varint (11 bytes)
			b = protowire.AppendTag(b, 6, protowire.VarintType)
			b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
		case 6: // a group
			b = protowire.AppendTag(b, 3, protowire.StartGroupType)
			b = protowire.AppendTag(b, 3, protowire.EndGroupType)
		case 7: // random bytes
			for range r.IntN(8) {
				b = append(b, byte(r.Uint32()))
			}
		}
	}
	return b, clean
}

// appendScalarsField appends a random value of field num of
// testv1.Scalars, of the field's wire type.
func appendScalarsField(r *rand.Rand, b []byte, num protowire.Number) []byte {
	varint := func() uint64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return uint64(r.IntN(300))
		case 2:
			return math.MaxUint64 - uint64(r.IntN(3)) // negative numbers, large unsigned ones
		}
		return r.Uint64() >> r.IntN(64)
	}
	switch num {
	case 1, 10, 12: // double, fixed64, sfixed64
		b = protowire.AppendTag(b, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, r.Uint64())
	case 2, 9, 11: // float, fixed32, sfixed32
		b = protowire.AppendTag(b, num, protowire.Fixed32Type)
		return protowire.AppendFixed32(b, r.Uint32())
	case 14, 15: // string, bytes
		b = protowire.AppendTag(b, num, protowire.BytesType)
		v := []byte("héllo, world"[:r.IntN(7)])
		if r.IntN(5) == 0 {
			v = nil
		}
		return protowire.AppendBytes(b, v)
	case 16: // enum: known and unknown values
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(r.IntN(int(herdv1.Code_CODE_UNAUTHENTICATED)+3)))
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, varint())
}
