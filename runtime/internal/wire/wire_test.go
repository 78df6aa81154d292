package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// The flag constants mirror the generated enum.
var (
	_ = [1]struct{}{}[wire.FlagCancel-uint32(herdv1.Flag_FLAG_CANCEL)]
	_ = [1]struct{}{}[wire.FlagSystem-uint32(herdv1.Flag_FLAG_SYSTEM)]
)

// headerCases covers every field, zero and extreme values.
func headerCases() []wire.Header {
	return []wire.Header{
		{},
		{Procedure: "/herd.v1.Control/Hello", CallID: 1},
		{ReplyTo: 7, Flags: wire.FlagSystem},
		{Flags: wire.FlagCancel | wire.FlagSystem, ReplyTo: math.MaxUint64},
		{CallID: math.MaxUint64, FDCount: math.MaxUint32, Flags: math.MaxUint32},
		{ReplyTo: 3, ErrorCode: int32(herdv1.Code_CODE_NOT_FOUND), ErrorMessage: "no such thing"},
		{ReplyTo: 3, ErrorCode: int32(herdv1.Code_CODE_INTERNAL)},
		{ReplyTo: 3, ErrorMessage: "message only, héllo ☃"},
		{ErrorCode: -1, ErrorMessage: "negative enum"},
		{ErrorCode: math.MinInt32},
		{DeadlineUnixNano: 1_700_000_000_123_456_789},
		{DeadlineUnixNano: -1},
		{DeadlineUnixNano: math.MinInt64},
		{
			Procedure: "/pkg.Svc/Method", CallID: 42, ReplyTo: 41, Flags: 1, FDCount: 3,
			ErrorCode: 14, ErrorMessage: "unavailable", DeadlineUnixNano: math.MaxInt64,
		},
		// Metadata keys in sorted order and unique: proto.Marshal's
		// deterministic map order, so that the bytes compare equal.
		{Procedure: "/pkg.Svc/Method", CallID: 9, Metadata: []string{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
		{CallID: 1, Metadata: []string{"", "", "a", "", "b", "héllo ☃"}},
		{CallID: 1, DeadlineUnixNano: 5, Metadata: []string{"k", strings.Repeat("v", 300)}},
		{CallID: 1, Metadata: []string{"odd"}}, // a trailing key without value is ignored
	}
}

// metadataMap is the map a list of key, value pairs stands for (last wins).
func metadataMap(md []string) map[string]string {
	if len(md) < 2 {
		return nil
	}
	m := make(map[string]string)
	for i := 0; i+1 < len(md); i += 2 {
		m[md[i]] = md[i+1]
	}
	return m
}

// toProto builds the generated envelope that h and payload stand for.
func toProto(h *wire.Header, payload []byte) *herdv1.Envelope {
	e := &herdv1.Envelope{
		Procedure:        h.Procedure,
		CallId:           h.CallID,
		ReplyTo:          h.ReplyTo,
		Flags:            h.Flags,
		Payload:          payload,
		FdCount:          h.FDCount,
		DeadlineUnixNano: h.DeadlineUnixNano,
		Metadata:         metadataMap(h.Metadata),
	}
	if h.ErrorCode != 0 || h.ErrorMessage != "" {
		e.Error = &herdv1.Error{Code: herdv1.Code(h.ErrorCode), Message: strings.ToValidUTF8(h.ErrorMessage, "\uFFFD")}
	}
	return e
}

// fromDecoded builds the generated envelope from a decoded one.
func fromDecoded(env *wire.Envelope) *herdv1.Envelope {
	e := &herdv1.Envelope{
		Procedure:        string(env.Procedure),
		CallId:           env.CallID,
		ReplyTo:          env.ReplyTo,
		Flags:            env.Flags,
		FdCount:          env.FDCount,
		DeadlineUnixNano: env.DeadlineUnixNano,
	}
	if len(env.Payload) > 0 {
		e.Payload = env.Payload
	}
	if env.HasError {
		e.Error = &herdv1.Error{Code: herdv1.Code(env.ErrorCode), Message: string(env.ErrorMessage)}
	}
	for _, kv := range env.Metadata {
		if e.Metadata == nil {
			e.Metadata = make(map[string]string)
		}
		e.Metadata[string(kv.Key)] = string(kv.Value)
	}
	return e
}

func prefixed(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func TestAppendFrameMatchesProtoMarshal(t *testing.T) {
	payloads := [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte{0xAB}, 300)}
	for i, h := range headerCases() {
		for _, p := range payloads {
			frame, err := wire.AppendFrameBytes(nil, &h, p, 0)
			if err != nil {
				t.Fatalf("case %d: AppendFrameBytes: %v", i, err)
			}
			if got := binary.BigEndian.Uint32(frame); int(got) != len(frame)-wire.PrefixSize {
				t.Fatalf("case %d: prefix %d, envelope is %d bytes", i, got, len(frame)-wire.PrefixSize)
			}
			want := toProto(&h, p)
			var got herdv1.Envelope
			if err := proto.Unmarshal(frame[wire.PrefixSize:], &got); err != nil {
				t.Fatalf("case %d: proto.Unmarshal: %v", i, err)
			}
			if len(want.Payload) == 0 {
				want.Payload = nil
			}
			if !proto.Equal(&got, want) {
				t.Fatalf("case %d: proto.Unmarshal gave %v, want %v", i, &got, want)
			}
			// Field order is the one proto.Marshal uses, so the bytes are equal.
			ref, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(frame[wire.PrefixSize:], ref) {
				t.Fatalf("case %d: hand encoding\n%x\nproto.Marshal\n%x", i, frame[wire.PrefixSize:], ref)
			}
		}
	}
}

func TestAppendFrameMessagePayload(t *testing.T) {
	msgs := []proto.Message{
		nil,
		&herdv1.HelloRequest{},
		&herdv1.HelloRequest{ProtocolVersion: 1, WorkerId: 12, Pid: 4242},
		&herdv1.Envelope{Procedure: "/nested", Payload: bytes.Repeat([]byte("z"), 1000)},
		(*herdv1.HelloRequest)(nil),
	}
	for i, m := range msgs {
		h := wire.Header{Procedure: "/herd.v1.Control/Hello", CallID: uint64(i + 1)}
		dst := []byte("existing")
		frame, err := wire.AppendFrame(dst, &h, m, 0)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !bytes.HasPrefix(frame, []byte("existing")) {
			t.Fatalf("case %d: dst prefix lost", i)
		}
		frame = frame[len("existing"):]
		var payload []byte
		if m != nil {
			payload, err = proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
		}
		same, err := wire.AppendFrameBytes(nil, &h, payload, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(frame, same) {
			t.Fatalf("case %d: AppendFrame %x, AppendFrameBytes %x", i, frame, same)
		}
	}
}

func TestDecodeProtoMarshal(t *testing.T) {
	for i, h := range headerCases() {
		for _, p := range [][]byte{nil, []byte("payload"), make([]byte, 1<<16)} {
			want := toProto(&h, p)
			b, err := proto.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			frame := prefixed(b)
			frame = append(frame, "trailing bytes of the next frame"...)
			var env wire.Envelope
			n, err := wire.Decode(frame, 0, &env)
			if err != nil {
				t.Fatalf("case %d: Decode: %v", i, err)
			}
			if n != wire.PrefixSize+len(b) {
				t.Fatalf("case %d: Decode took %d bytes, want %d", i, n, wire.PrefixSize+len(b))
			}
			if got := fromDecoded(&env); !proto.Equal(got, want) {
				t.Fatalf("case %d: decoded %v, want %v", i, got, want)
			}
		}
	}
}

// TestDecodeSkipsUnknownFields appends every kind of unknown field, and known
// field numbers with the wrong wire type, which proto also treats as unknown.
func TestDecodeSkipsUnknownFields(t *testing.T) {
	h := wire.Header{Procedure: "/a.B/C", CallID: 9, ErrorCode: 5, ErrorMessage: "m"}
	frame, err := wire.AppendFrameBytes(nil, &h, []byte("pay"), 0)
	if err != nil {
		t.Fatal(err)
	}
	b := frame[wire.PrefixSize:]
	b = protowire.AppendTag(b, 99, protowire.VarintType)
	b = protowire.AppendVarint(b, 12345)
	b = protowire.AppendTag(b, 100, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 1)
	b = protowire.AppendTag(b, 101, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 2)
	b = protowire.AppendTag(b, 102, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("future"))
	b = protowire.AppendTag(b, 103, protowire.StartGroupType)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 103, protowire.EndGroupType)
	b = protowire.AppendTag(b, 2, protowire.BytesType) // call_id with the wrong type
	b = protowire.AppendBytes(b, []byte("not a varint"))
	b = protowire.AppendTag(b, 1, protowire.VarintType) // procedure with the wrong type
	b = protowire.AppendVarint(b, 77)
	// An error field with an unknown field inside.
	inner := protowire.AppendTag(nil, 9, protowire.VarintType)
	inner = protowire.AppendVarint(inner, 3)
	b = protowire.AppendTag(b, 7, protowire.BytesType)
	b = protowire.AppendBytes(b, inner)

	var want herdv1.Envelope
	if err := proto.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	var env wire.Envelope
	if _, err := wire.Decode(prefixed(b), 0, &env); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want.ProtoReflect().SetUnknown(nil)
	want.GetError().ProtoReflect().SetUnknown(nil)
	if got := fromDecoded(&env); !proto.Equal(got, &want) {
		t.Fatalf("decoded %v, want %v", got, &want)
	}
	if env.CallID != 9 || string(env.Procedure) != "/a.B/C" || env.ErrorCode != 5 || string(env.ErrorMessage) != "m" {
		t.Fatalf("known fields changed by unknown ones: %+v", env)
	}
}

// TestDecodeRepeatedFields checks proto's last-one-wins and message merging.
func TestDecodeRepeatedFields(t *testing.T) {
	a, _ := wire.AppendFrameBytes(nil, &wire.Header{CallID: 1, Procedure: "/first", ErrorCode: 3}, []byte("one"), 0)
	b, _ := wire.AppendFrameBytes(nil, &wire.Header{CallID: 2, ErrorMessage: "second"}, nil, 0)
	body := append(append([]byte{}, a[wire.PrefixSize:]...), b[wire.PrefixSize:]...)
	var want herdv1.Envelope
	if err := proto.Unmarshal(body, &want); err != nil {
		t.Fatal(err)
	}
	var env wire.Envelope
	if _, err := wire.Decode(prefixed(body), 0, &env); err != nil {
		t.Fatal(err)
	}
	if got := fromDecoded(&env); !proto.Equal(got, &want) {
		t.Fatalf("decoded %v, want %v", got, &want)
	}
	if env.CallID != 2 || env.ErrorCode != 3 || string(env.ErrorMessage) != "second" {
		t.Fatalf("unexpected merge: %+v", env)
	}
}

func TestDecodeNeedsMoreData(t *testing.T) {
	frame, err := wire.AppendFrameBytes(nil, &wire.Header{Procedure: "/x.Y/Z", CallID: 5}, []byte("hello"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var env wire.Envelope
	for i := range len(frame) {
		n, err := wire.Decode(frame[:i], 0, &env)
		if n != 0 || err != nil {
			t.Fatalf("Decode of %d/%d bytes = %d, %v; want 0, nil", i, len(frame), n, err)
		}
	}
	// Two frames back to back decode one at a time.
	two := append(append([]byte{}, frame...), frame...)
	n, err := wire.Decode(two, 0, &env)
	if err != nil || n != len(frame) {
		t.Fatalf("Decode = %d, %v; want %d", n, err, len(frame))
	}
	n, err = wire.Decode(two[n:], 0, &env)
	if err != nil || n != len(frame) || string(env.Payload) != "hello" {
		t.Fatalf("second Decode = %d, %v, %q", n, err, env.Payload)
	}
	// An empty envelope is a valid frame.
	n, err = wire.Decode([]byte{0, 0, 0, 0}, 0, &env)
	if err != nil || n != 4 {
		t.Fatalf("empty frame: %d, %v", n, err)
	}
}

func TestDecodeFrameTooLarge(t *testing.T) {
	var env wire.Envelope
	// The prefix alone is enough to reject the frame.
	n, err := wire.Decode([]byte{0xFF, 0xFF, 0xFF, 0xFF}, 0, &env)
	if n != 0 || !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("Decode = %d, %v; want ErrFrameTooLarge", n, err)
	}
	frame, _ := wire.AppendFrameBytes(nil, nil, make([]byte, 100), 0)
	size := len(frame) - wire.PrefixSize
	if _, err := wire.Decode(frame[:4], size-1, &env); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("limit %d: %v; want ErrFrameTooLarge", size-1, err)
	}
	if n, err := wire.Decode(frame, size, &env); err != nil || n != len(frame) {
		t.Fatalf("limit %d: %d, %v", size, n, err)
	}
	// Rejecting a 4 GiB claim allocates nothing near that size.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		wire.Decode([]byte{0xFF, 0xFF, 0xFF, 0xFF}, 0, &env)
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("rejecting oversize prefixes allocated %d bytes", d)
	}
}

func TestAppendFrameTooLarge(t *testing.T) {
	dst := []byte("keep")
	h := wire.Header{Procedure: "/p"}
	out, err := wire.AppendFrameBytes(dst, &h, make([]byte, 1000), 500)
	if !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("err = %v; want ErrFrameTooLarge", err)
	}
	if string(out) != "keep" {
		t.Fatalf("dst changed to %q", out)
	}
	out, err = wire.AppendFrame(dst, &h, &herdv1.Envelope{Payload: make([]byte, 1000)}, 500)
	if !errors.Is(err, wire.ErrFrameTooLarge) || string(out) != "keep" {
		t.Fatalf("AppendFrame = %q, %v; want dst unchanged and ErrFrameTooLarge", out, err)
	}
	// Exactly at the limit is fine.
	frame, err := wire.AppendFrameBytes(nil, &h, make([]byte, 1000), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wire.AppendFrameBytes(nil, &h, make([]byte, 1000), len(frame)-wire.PrefixSize); err != nil {
		t.Fatalf("frame at the limit: %v", err)
	}
}

func TestAppendFrameUTF8(t *testing.T) {
	_, err := wire.AppendFrameBytes(nil, &wire.Header{Procedure: "/bad\xff"}, nil, 0)
	if !errors.Is(err, wire.ErrInvalidUTF8) {
		t.Fatalf("invalid procedure: %v; want ErrInvalidUTF8", err)
	}
	for _, msg := range []string{"ok", "\xff", "a\xff\xfeb", "\xe2\x98", "x\xe2\x98\x83\xc0y", "\uFFFD\xff"} {
		h := wire.Header{ErrorCode: 2, ErrorMessage: msg}
		frame, err := wire.AppendFrameBytes(nil, &h, nil, 0)
		if err != nil {
			t.Fatalf("%q: %v", msg, err)
		}
		var got herdv1.Envelope
		if err := proto.Unmarshal(frame[wire.PrefixSize:], &got); err != nil {
			t.Fatalf("%q: proto.Unmarshal: %v", msg, err)
		}
		if want := strings.ToValidUTF8(msg, "\uFFFD"); got.GetError().GetMessage() != want {
			t.Fatalf("%q sent as %q, want %q", msg, got.GetError().GetMessage(), want)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	cases := map[string][]byte{
		"bad tag":               {0xFF, 0xFF, 0xFF},
		"field number zero":     {0x00, 0x01},
		"field number too big":  {0x80, 0xFF, 0xFF, 0xFF, 0x30, 0x01},
		"truncated varint":      {0x10, 0x80},
		"truncated bytes":       {0x2A, 0x05, 'a'},
		"varint overflow":       {0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02},
		"reserved wire type":    {0x0E},
		"stray end group":       {0x0C},
		"unterminated group":    {0x4B, 0x08, 0x01},
		"invalid utf8 proc":     {0x0A, 0x01, 0xFF},
		"invalid utf8 message":  {0x3A, 0x03, 0x12, 0x01, 0xC0},
		"bad error body":        {0x3A, 0x02, 0x08, 0x80},
		"error length too long": {0x3A, 0x09, 0x08},
	}
	for name, body := range cases {
		var env wire.Envelope
		n, err := wire.Decode(prefixed(body), 0, &env)
		var pe *wire.ProtocolError
		if n != 0 || !errors.As(err, &pe) {
			t.Errorf("%s: Decode = %d, %v; want a *ProtocolError", name, n, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "herd: protocol error: ") {
			t.Errorf("%s: message %q", name, err)
		}
		if err := proto.Unmarshal(body, new(herdv1.Envelope)); err == nil {
			t.Errorf("%s: proto.Unmarshal accepts what Decode rejects", name)
		}
	}
}

func TestProtocolError(t *testing.T) {
	err := error(&wire.ProtocolError{Cause: io.ErrUnexpectedEOF})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal("ProtocolError does not unwrap to its cause")
	}
	if got, want := err.Error(), "herd: protocol error: unexpected EOF"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	h := wire.Header{Procedure: "/herd.v1.Control/Hello", CallID: 1, DeadlineUnixNano: 1e18, ErrorMessage: "bad \xff byte"}
	msg := &herdv1.HelloRequest{ProtocolVersion: 1, WorkerId: 3, Pid: 1234}
	buf := make([]byte, 0, 4096)
	if a := testing.AllocsPerRun(1000, func() {
		buf, _ = wire.AppendFrame(buf[:0], &h, msg, 0)
	}); a != 0 {
		t.Errorf("AppendFrame: %v allocs/op", a)
	}
	if a := testing.AllocsPerRun(1000, func() {
		buf, _ = wire.AppendFrameBytes(buf[:0], &h, []byte("payload"), 0)
	}); a != 0 {
		t.Errorf("AppendFrameBytes: %v allocs/op", a)
	}
	frame, _ := wire.AppendFrame(nil, &h, msg, 0)
	var env wire.Envelope
	if a := testing.AllocsPerRun(1000, func() {
		wire.Decode(frame, 0, &env)
	}); a != 0 {
		t.Errorf("Decode: %v allocs/op", a)
	}
}

// TestDecodeMetadataBounded: a frame with more metadata entries than
// MaxMetadataEntries decodes (proto.Unmarshal accepts it), keeps the first
// MaxMetadataEntries and counts them all.
func TestDecodeMetadataBounded(t *testing.T) {
	const n = 3 * wire.MaxMetadataEntries
	h := wire.Header{CallID: 1}
	for i := range n {
		h.Metadata = append(h.Metadata, string(rune('a'+i%26)), "v")
	}
	frame, err := wire.AppendFrameBytes(nil, &h, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var env wire.Envelope
	if _, err := wire.Decode(frame, 0, &env); err != nil {
		t.Fatal(err)
	}
	if env.MetadataCount != n || len(env.Metadata) != wire.MaxMetadataEntries {
		t.Fatalf("count %d, kept %d; want %d, %d", env.MetadataCount, len(env.Metadata), n, wire.MaxMetadataEntries)
	}
	if string(env.Metadata[1].Key) != "b" || string(env.Metadata[1].Value) != "v" {
		t.Fatalf("entry 1 = %q: %q", env.Metadata[1].Key, env.Metadata[1].Value)
	}
}

func TestAppendFrameMetadataInvalidUTF8(t *testing.T) {
	for _, md := range [][]string{{"k\xff", "v"}, {"k", "\xc3"}} {
		h := wire.Header{CallID: 1, Metadata: md}
		dst := []byte("keep")
		got, err := wire.AppendFrameBytes(dst, &h, nil, 0)
		if !errors.Is(err, wire.ErrInvalidUTF8) || string(got) != "keep" {
			t.Fatalf("%q: %q, %v; want dst unchanged and ErrInvalidUTF8", md, got, err)
		}
	}
}

// TestDecodeKnown: DecodeKnown skips the UTF-8 check only for the known
// procedure; any other invalid one is the *ProtocolError Decode gives.
func TestDecodeKnown(t *testing.T) {
	valid := "/t.T/P"
	frame := func(proc string) []byte {
		// AppendFrame refuses invalid UTF-8: build the envelope by hand.
		body := protowire.AppendTag(nil, 1, protowire.BytesType)
		body = protowire.AppendString(body, proc)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	var env wire.Envelope
	if n, err := wire.DecodeKnown(frame(valid), 0, &env, []byte(valid)); err != nil || n == 0 || string(env.Procedure) != valid {
		t.Fatalf("known procedure: %d, %v, %q", n, err, env.Procedure)
	}
	for _, known := range []string{"", valid, "/t.T/\xff\xfe"[:5]} {
		n, err := wire.DecodeKnown(frame("/t.T/\xff"), 0, &env, []byte(known))
		var pe *wire.ProtocolError
		if n != 0 || !errors.As(err, &pe) {
			t.Fatalf("invalid procedure, known %q: %d, %v; want a *ProtocolError", known, n, err)
		}
	}
	if n, err := wire.DecodeKnown(frame("/t.T/Q"), 0, &env, []byte(valid)); err != nil || n == 0 || string(env.Procedure) != "/t.T/Q" {
		t.Fatalf("other valid procedure: %d, %v, %q", n, err, env.Procedure)
	}
}

// TestDecodeReusedEnvelope: decoding into an envelope that holds another
// frame leaves nothing of it behind, whichever fields either frame has
// (parse resets only the rare fields that are set), and KnownProcedure
// says whether the procedure equals the known one.
func TestDecodeReusedEnvelope(t *testing.T) {
	full := wire.Header{Procedure: "/t.T/P", CallID: 300, ReplyTo: 7, Flags: wire.FlagSystem, ErrorCode: 3,
		ErrorMessage: "bad", DeadlineUnixNano: 1 << 40, Metadata: []string{"k", "v", "k2", "v2"}}
	frames := map[string][]byte{}
	for name, h := range map[string]wire.Header{"full": full, "plain": {Procedure: "/t.T/Q"}, "reply": {ReplyTo: 1}, "empty": {}} {
		b, err := wire.AppendFrameBytes(nil, &h, []byte("payload-"+name), 0)
		if err != nil {
			t.Fatal(err)
		}
		frames[name] = b
	}
	for first, fb := range frames {
		for second, sb := range frames {
			var reused, fresh wire.Envelope
			if _, err := wire.Decode(fb, 0, &reused); err != nil {
				t.Fatal(err)
			}
			if _, err := wire.Decode(sb, 0, &reused); err != nil {
				t.Fatal(err)
			}
			if _, err := wire.Decode(sb, 0, &fresh); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(reused, fresh) {
				t.Errorf("%s after %s: %+v; decoded fresh %+v", second, first, reused, fresh)
			}
		}
	}
	var env wire.Envelope
	for _, tt := range []struct {
		known string
		want  bool
	}{{"/t.T/Q", true}, {"/t.T/P", false}, {"", false}} {
		if _, err := wire.DecodeKnown(frames["plain"], 0, &env, []byte(tt.known)); err != nil || env.KnownProcedure != tt.want {
			t.Errorf("known %q: KnownProcedure %v, %v; want %v", tt.known, env.KnownProcedure, err, tt.want)
		}
	}
	if _, err := wire.DecodeKnown(frames["reply"], 0, &env, []byte("")); err != nil || env.KnownProcedure {
		t.Errorf("a frame without a procedure: KnownProcedure %v, %v", env.KnownProcedure, err)
	}
}

// TestDecodeKnownShortFrame: the one-way stream's frame (the known
// procedure, then a short payload that ends the envelope), which parse
// reads without its field loop, decodes as Decode decodes it, and so do
// the frames that start the same way but are not that frame: a payload
// followed by more fields, a repeated procedure or payload, a payload
// that runs past the envelope, an empty known procedure, a procedure
// longer than a one-byte length (and a known one that matches the bytes
// after such a length's first byte). It fails if the short path takes a frame
// it should leave to the loop.
func TestDecodeKnownShortFrame(t *testing.T) {
	const known = "/t.T/Report"
	field := func(b []byte, num protowire.Number, v string) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, v)
	}
	long := "/t.T/" + strings.Repeat("x", 195) // 200 bytes: a two-byte length, c8 01
	// A known procedure as long as the first byte of long's length reads
	// as one byte, equal to the bytes that follow it.
	tricky := "\x01" + long[:199]
	bodies := map[string][]byte{
		"short":             field(field(nil, 1, known), 5, "\x10\x07"),
		"no payload":        field(nil, 1, known),
		"empty payload":     field(field(nil, 1, known), 5, ""),
		"payload then call": protowire.AppendVarint(protowire.AppendTag(field(field(nil, 1, known), 5, "p"), 2, protowire.VarintType), 9),
		"procedure twice":   field(field(field(nil, 1, known), 5, "p"), 1, "/t.T/Other"),
		"payload twice":     field(field(field(nil, 1, known), 5, "p"), 5, "q"),
		"other procedure":   field(field(nil, 1, "/t.T/Reporx"), 5, "p"),
		"long procedure":    field(field(nil, 1, long), 5, "p"),
		"long payload":      field(field(nil, 1, known), 5, strings.Repeat("p", 300)),
		"empty procedure":   field(field(nil, 1, ""), 5, "p"),
	}
	// A payload whose length runs past the envelope's end.
	bodies["truncated payload"] = append(field(nil, 1, known), 5<<3|2, 9, 'p')
	for name, body := range bodies {
		frame := append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
		for _, k := range []string{known, "", long, tricky} {
			var want, got wire.Envelope
			wn, werr := wire.Decode(frame, 0, &want)
			gn, gerr := wire.DecodeKnown(frame, 0, &got, []byte(k))
			if (werr == nil) != (gerr == nil) || wn != gn {
				t.Fatalf("%s, known %.20q: DecodeKnown = %d, %v; Decode = %d, %v", name, k, gn, gerr, wn, werr)
			}
			if werr != nil {
				continue
			}
			if wantKnown := len(want.Procedure) > 0 && string(want.Procedure) == k; got.KnownProcedure != wantKnown {
				t.Fatalf("%s, known %.20q: KnownProcedure %v", name, k, got.KnownProcedure)
			}
			got.KnownProcedure = false
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s, known %.20q: %+v; Decode %+v", name, k, got, want)
			}
		}
	}
}
