package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// sameAsMarshal checks that AppendFrame encodes m exactly as
// AppendFrameBytes encodes proto.Marshal's bytes of it.
func sameAsMarshal(t *testing.T, name string, h *wire.Header, m proto.Message) {
	t.Helper()
	frame, err := wire.AppendFrame([]byte("x"), h, m, 0)
	if err != nil {
		t.Fatalf("%s: AppendFrame: %v", name, err)
	}
	payload, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("%s: proto.Marshal: %v", name, err)
	}
	want, err := wire.AppendFrameBytes([]byte("x"), h, payload, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(frame, want) {
		t.Fatalf("%s: AppendFrame %x, want %x", name, frame, want)
	}
}

// TestAppendFrameFastPath covers the payload shapes the fast path (the
// message's own Size and Marshal methods) meets: nested messages, whose
// sizes Marshal takes from the cache the Size call filled, a message
// reused with a changed size, and big varints in the envelope.
func TestAppendFrameFastPath(t *testing.T) {
	h := &wire.Header{Procedure: "/herd.test.v1.TestService/Report", CallID: 1<<63 + 5, ReplyTo: 300, Flags: 3, DeadlineUnixNano: -1}
	r := &testv1.ReportRequest{Message: "m"}
	for _, seq := range []uint64{0, 1, 127, 128, 1 << 40} {
		r.Seq = seq
		r.Padding = bytes.Repeat([]byte("p"), int(seq%200))
		sameAsMarshal(t, "report", h, r)
	}
	nested := &herdv1.Envelope{Procedure: "/n", Error: &herdv1.Error{Code: herdv1.Code_CODE_INTERNAL, Message: "short"}}
	sameAsMarshal(t, "nested", h, nested)
	// The nested message grows: its cached size from the first call
	// must not be used.
	nested.Error.Message = string(bytes.Repeat([]byte("long "), 100))
	sameAsMarshal(t, "nested grown", h, nested)
}

// TestAppendFrameRequiredFields: a proto2 message with a required field
// unset is refused as proto.Marshal refuses it (errors.Is proto.Error),
// and nothing is appended; once set, it encodes as proto.Marshal does.
func TestAppendFrameRequiredFields(t *testing.T) {
	h := &wire.Header{Procedure: "/p"}
	m := &descriptorpb.UninterpretedOption_NamePart{NamePart: proto.String("a")} // is_extension unset
	if _, err := proto.Marshal(m); err == nil {
		t.Fatal("proto.Marshal accepted a missing required field; the test needs another message")
	}
	dst := []byte("keep")
	got, err := wire.AppendFrame(dst, h, m, 0)
	if err == nil || !errors.Is(err, proto.Error) {
		t.Fatalf("AppendFrame = %v, want an error matching proto.Error", err)
	}
	if string(got) != "keep" {
		t.Fatalf("dst changed to %q", got)
	}
	// Nested: the required field is in a sub-message.
	opt := &descriptorpb.UninterpretedOption{Name: []*descriptorpb.UninterpretedOption_NamePart{m}}
	if _, err := wire.AppendFrame(nil, h, opt, 0); !errors.Is(err, proto.Error) {
		t.Fatalf("nested: AppendFrame = %v, want an error matching proto.Error", err)
	}
	m.IsExtension = proto.Bool(false)
	sameAsMarshal(t, "required set", h, m)
	sameAsMarshal(t, "nested required set", h, opt)
}

// TestAppendFrameNoFastPath: a message without fast-path methods
// (dynamicpb) goes through proto.Size and MarshalAppend, with the same
// bytes.
func TestAppendFrameNoFastPath(t *testing.T) {
	src := &testv1.ReportRequest{Message: "dyn", Seq: 300, Padding: []byte{1, 2, 3}}
	dyn := dynamicpb.NewMessage(src.ProtoReflect().Descriptor())
	b, err := proto.Marshal(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, dyn); err != nil {
		t.Fatal(err)
	}
	if dyn.ProtoMethods() != nil {
		t.Fatal("dynamicpb has fast-path methods now; the test needs another message")
	}
	// dynamicpb marshals its fields in map order, so compare decoded.
	frame, err := wire.AppendFrame(nil, &wire.Header{Procedure: "/p"}, dyn, 0)
	if err != nil {
		t.Fatal(err)
	}
	var env wire.Envelope
	if n, err := wire.Decode(frame, 0, &env); err != nil || n != len(frame) {
		t.Fatalf("Decode = %d, %v", n, err)
	}
	got := new(testv1.ReportRequest)
	if err := proto.Unmarshal(env.Payload, got); err != nil {
		t.Fatal(err)
	}
	if string(env.Procedure) != "/p" || !proto.Equal(got, src) {
		t.Fatalf("decoded %q %v, want /p %v", env.Procedure, got, src)
	}
}

// TestSizeFrame: SizeFrame's Len is the length AppendTo appends, its
// checks are AppendFrame's, and a frame sized then appended is
// AppendFrame's.
func TestSizeFrame(t *testing.T) {
	h := &wire.Header{Procedure: "/p", CallID: 7, Metadata: []string{"k", "v"}}
	m := &testv1.ReportRequest{Message: "sized", Seq: 1 << 20}
	f, err := wire.SizeFrame(h, m, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.AppendTo([]byte("pre"), h)
	if err != nil {
		t.Fatal(err)
	}
	if len(got)-3 != f.Len() {
		t.Fatalf("appended %d bytes, Len %d", len(got)-3, f.Len())
	}
	want, err := wire.AppendFrame([]byte("pre"), h, m, 0)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("AppendTo %x, AppendFrame %x (%v)", got, want, err)
	}
	if _, err := wire.SizeFrame(h, m, f.Len()-wire.PrefixSize-1); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("one byte over the limit: %v, want ErrFrameTooLarge", err)
	}
	if _, err := wire.SizeFrame(&wire.Header{Procedure: "\xff"}, m, 0); !errors.Is(err, wire.ErrInvalidUTF8) {
		t.Fatalf("invalid procedure: %v, want ErrInvalidUTF8", err)
	}
	// A payload that grew between SizeFrame and AppendTo is refused and
	// nothing is appended.
	f, err = wire.SizeFrame(h, m, 0)
	if err != nil {
		t.Fatal(err)
	}
	m.Message += " and grown"
	if got, err := f.AppendTo([]byte("pre"), h); err == nil || string(got) != "pre" {
		t.Fatalf("changed payload: %q, %v; want pre and an error", got, err)
	}
	var nilFrame wire.Frame
	if nilFrame, err = wire.SizeFrame(nil, nil, 0); err != nil || nilFrame.Len() != wire.PrefixSize {
		t.Fatalf("empty frame: Len %d, %v", nilFrame.Len(), err)
	}
}
