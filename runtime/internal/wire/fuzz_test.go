package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// FuzzDecode feeds arbitrary bytes to Decode. It must never panic; its
// verdict must agree with proto.Unmarshal; and a decoded frame must survive
// re-encoding with AppendFrameBytes. Seeds live in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	const maxFrame = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		var env wire.Envelope
		n, err := wire.Decode(data, maxFrame, &env)
		// DecodeKnown, given a valid procedure it skips the check of,
		// decodes exactly as Decode: an invalid procedure is never equal
		// to it, and a valid one passes the check anyway.
		for _, known := range [][]byte{[]byte("/herd.v1.Control/Hello"), []byte(env.Procedure)} {
			var kenv wire.Envelope
			kn, kerr := wire.DecodeKnown(data, maxFrame, &kenv, known)
			if err == nil && kenv.KnownProcedure != (len(kenv.Procedure) > 0 && bytes.Equal(kenv.Procedure, known)) {
				t.Fatalf("DecodeKnown(known %q): KnownProcedure %v for procedure %q", known, kenv.KnownProcedure, kenv.Procedure)
			}
			kenv.KnownProcedure = false
			if kn != n || (kerr == nil) != (err == nil) || !reflect.DeepEqual(kenv, env) && err == nil {
				t.Fatalf("DecodeKnown(known %q) = %d, %v, %+v; Decode = %d, %v, %+v", known, kn, kerr, kenv, n, err, env)
			}
			if kerr != nil && kerr.Error() != err.Error() {
				t.Fatalf("DecodeKnown(known %q) error %v; Decode %v", known, kerr, err)
			}
		}
		if len(data) < wire.PrefixSize {
			if n != 0 || err != nil {
				t.Fatalf("short input: %d, %v", n, err)
			}
			return
		}
		l := int(binary.BigEndian.Uint32(data))
		if l > maxFrame {
			if n != 0 || !errors.Is(err, wire.ErrFrameTooLarge) {
				t.Fatalf("length %d > %d: %d, %v; want ErrFrameTooLarge", l, maxFrame, n, err)
			}
			return
		}
		if len(data) < wire.PrefixSize+l {
			if n != 0 || err != nil {
				t.Fatalf("incomplete frame: %d, %v; want 0, nil", n, err)
			}
			return
		}
		body := data[wire.PrefixSize : wire.PrefixSize+l]
		var ref herdv1.Envelope
		refErr := proto.Unmarshal(body, &ref)
		if err != nil {
			var pe *wire.ProtocolError
			if n != 0 || !errors.As(err, &pe) {
				t.Fatalf("Decode = %d, %v; want 0 and a *ProtocolError", n, err)
			}
			if refErr == nil {
				t.Fatalf("Decode rejects what proto.Unmarshal accepts: %v", err)
			}
			return
		}
		if n != wire.PrefixSize+l {
			t.Fatalf("Decode took %d bytes of a %d-byte frame", n, wire.PrefixSize+l)
		}
		if refErr != nil {
			t.Fatalf("Decode accepts what proto.Unmarshal rejects: %v", refErr)
		}
		ref.ProtoReflect().SetUnknown(nil)
		if ref.Error != nil {
			ref.Error.ProtoReflect().SetUnknown(nil)
		}
		if len(ref.Payload) == 0 {
			ref.Payload = nil
		}
		if env.MetadataCount != len(env.Metadata) && len(env.Metadata) != wire.MaxMetadataEntries {
			t.Fatalf("Decode kept %d of %d metadata entries; want min(count, %d)", len(env.Metadata), env.MetadataCount, wire.MaxMetadataEntries)
		}
		if env.MetadataCount > wire.MaxMetadataEntries {
			// Decode keeps only the first entries; compare the rest
			// of the envelope.
			ref.Metadata = nil
			env.Metadata = nil
		}
		if len(ref.Metadata) == 0 {
			ref.Metadata = nil
		}
		if got := fromDecoded(&env); !proto.Equal(got, &ref) {
			t.Fatalf("Decode gave %v, proto.Unmarshal %v", got, &ref)
		}

		// Re-encode the decoded fields and decode again.
		h := wire.Header{
			Procedure:        string(env.Procedure),
			CallID:           env.CallID,
			ReplyTo:          env.ReplyTo,
			Flags:            env.Flags,
			FDCount:          env.FDCount,
			ErrorCode:        env.ErrorCode,
			ErrorMessage:     string(env.ErrorMessage),
			DeadlineUnixNano: env.DeadlineUnixNano,
		}
		for _, kv := range env.Metadata {
			h.Metadata = append(h.Metadata, string(kv.Key), string(kv.Value))
		}
		frame, err := wire.AppendFrameBytes(nil, &h, env.Payload, maxFrame+64)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		var again wire.Envelope
		n, err = wire.Decode(frame, maxFrame+64, &again)
		if err != nil || n != len(frame) {
			t.Fatalf("decoding the re-encoded frame: %d, %v", n, err)
		}
		// An empty error field cannot be re-encoded: AppendFrame omits it.
		wantHasError := env.HasError && (env.ErrorCode != 0 || len(env.ErrorMessage) > 0)
		if again.CallID != env.CallID || again.ReplyTo != env.ReplyTo || again.Flags != env.Flags ||
			again.FDCount != env.FDCount || again.ErrorCode != env.ErrorCode ||
			again.DeadlineUnixNano != env.DeadlineUnixNano || again.HasError != wantHasError ||
			!bytes.Equal(again.Procedure, env.Procedure) || !bytes.Equal(again.ErrorMessage, env.ErrorMessage) ||
			!bytes.Equal(again.Payload, env.Payload) || !sameMetadata(again.Metadata, env.Metadata) {
			t.Fatalf("round trip changed the envelope:\n got %+v\nwant %+v", again, env)
		}
	})
}

func sameMetadata(a, b []wire.MetadataEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}
