package wire_test

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// joinSplit puts a split frame back together.
func joinSplit(b, ext []byte, at int) []byte {
	return append(append(append([]byte(nil), b[:at]...), ext...), b[at:]...)
}

// decodeFrame decodes a whole frame and its payload into m.
func decodeFrame(t *testing.T, frame []byte, m proto.Message) wire.Envelope {
	t.Helper()
	var env wire.Envelope
	n, err := wire.Decode(frame, 0, &env)
	if err != nil || n != len(frame) {
		t.Fatalf("Decode = %d, %v; want %d, nil", n, err, len(frame))
	}
	if err := proto.Unmarshal(env.Payload, m); err != nil {
		t.Fatalf("payload: %v", err)
	}
	return env
}

// TestAppendFrameSplit: a message with a large bytes field is encoded
// around it, the field's own slice handed back; put together, the frame
// has AppendFrame's length and decodes to the same header and message.
func TestAppendFrameSplit(t *testing.T) {
	h := &wire.Header{Procedure: "/t/P", CallID: 9, DeadlineUnixNano: 12345, Metadata: []string{"k", "v"}}
	msg := &testv1.PayloadRequest{Data: bytes.Repeat([]byte("xyz"), wire.SplitMinSize), ResponseSize: 3}
	prefix := []byte("already queued")
	b, ext, at, err := wire.AppendFrameSplit(append([]byte(nil), prefix...), h, msg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.SliceData(ext) != unsafe.SliceData(msg.Data) || len(ext) != len(msg.Data) {
		t.Fatal("ext is not the message's own data")
	}
	if !bytes.HasPrefix(b, prefix) || at < len(prefix) || at > len(b) {
		t.Fatalf("bad split: %d bytes, at %d", len(b), at)
	}
	whole, err := wire.AppendFrame(nil, h, msg, 0)
	if err != nil {
		t.Fatal(err)
	}
	frame := joinSplit(b, ext, at)[len(prefix):]
	if len(frame) != len(whole) {
		t.Fatalf("split frame is %d bytes, AppendFrame's %d", len(frame), len(whole))
	}
	var got testv1.PayloadRequest
	env := decodeFrame(t, frame, &got)
	if string(env.Procedure) != h.Procedure || env.CallID != h.CallID || env.DeadlineUnixNano != h.DeadlineUnixNano || env.MetadataCount != 1 {
		t.Fatalf("header decoded as %+v", env)
	}
	if !proto.Equal(&got, msg) {
		t.Fatal("payload decodes to another message")
	}
}

// TestAppendFrameSplitSmall: without a large bytes field, AppendFrameSplit
// is AppendFrame, byte for byte.
func TestAppendFrameSplitSmall(t *testing.T) {
	h := &wire.Header{CallID: 1}
	for _, msg := range []proto.Message{
		nil,
		&testv1.PayloadRequest{Data: make([]byte, wire.SplitMinSize-16)},
		&testv1.PayloadRequest{ResponseSize: 1 << 20},
	} {
		b, ext, _, err := wire.AppendFrameSplit(nil, h, msg, 0)
		if err != nil || ext != nil {
			t.Fatalf("%v: ext %d bytes, %v", msg, len(ext), err)
		}
		want, _ := wire.AppendFrame(nil, h, msg, 0)
		if !bytes.Equal(b, want) {
			t.Fatalf("%v: differs from AppendFrame", msg)
		}
	}
}

// TestAppendFrameSplitKinds: of several large bytes fields the largest is
// split off; oneofs, nested messages, repeated and unknown fields survive.
func TestAppendFrameSplitKinds(t *testing.T) {
	fields := blobType.Descriptor().Fields()
	m := newBlob()
	r := m.ProtoReflect()
	r.Set(fields.ByNumber(1), protoreflect.ValueOfBytes(bytes.Repeat([]byte{1}, wire.SplitMinSize)))
	r.Set(fields.ByNumber(3), protoreflect.ValueOfBytes(bytes.Repeat([]byte{3}, 2*wire.SplitMinSize)))
	list := r.Mutable(fields.ByNumber(2)).List()
	list.Append(protoreflect.ValueOfBytes(bytes.Repeat([]byte{2}, 3*wire.SplitMinSize)))
	inner := newBlob()
	inner.ProtoReflect().Set(fields.ByNumber(7), protoreflect.ValueOfInt32(4))
	inner.ProtoReflect().Set(fields.ByNumber(1), protoreflect.ValueOfBytes(bytes.Repeat([]byte{5}, 4*wire.SplitMinSize)))
	r.Set(fields.ByNumber(5), protoreflect.ValueOfMessage(inner.ProtoReflect()))
	r.Set(fields.ByNumber(7), protoreflect.ValueOfInt32(1))
	r.SetUnknown(protoreflect.RawFields(appendVarintField(nil, 99, 7)))

	b, ext, at, err := wire.AppendFrameSplit(nil, nil, m, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != 2*wire.SplitMinSize || ext[0] != 3 {
		t.Fatalf("split off %d bytes of %d, want the oneof's raw field", len(ext), ext[0])
	}
	got := newBlob()
	decodeFrame(t, joinSplit(b, ext, at), got)
	if !proto.Equal(got, m) {
		t.Fatal("decoded message differs")
	}
	if !bytes.Equal(got.ProtoReflect().GetUnknown(), appendVarintField(nil, 99, 7)) {
		t.Fatal("unknown field lost")
	}
	if !r.Has(fields.ByNumber(3)) || r.Get(fields.ByNumber(1)).Bytes()[0] != 1 {
		t.Fatal("the message was changed")
	}
}

// TestAppendFrameSplitTooLarge: the limit counts the split-off field, and
// nothing is appended.
func TestAppendFrameSplitTooLarge(t *testing.T) {
	msg := &testv1.PayloadRequest{Data: make([]byte, 2*wire.SplitMinSize)}
	dst := []byte("keep")
	b, ext, _, err := wire.AppendFrameSplit(dst, nil, msg, 2*wire.SplitMinSize)
	if !errors.Is(err, wire.ErrFrameTooLarge) || ext != nil || string(b) != "keep" {
		t.Fatalf("= %q, %d bytes ext, %v; want dst, nil, ErrFrameTooLarge", b, len(ext), err)
	}
}
