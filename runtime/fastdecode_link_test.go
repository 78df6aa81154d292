//go:build linux || darwin

package runtime

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	"github.com/herd-go/herd/runtime/internal/link"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestFlatRequestsOverLink: requests read from a link are decoded as
// proto.Unmarshal decodes them, whether the runtime decodes them itself
// (fastdecode.go) or leaves them to proto.Unmarshal: a flat message, one
// with an unknown field (which the handler's request keeps) and one with
// a wrong wire type reach the handler as proto.Unmarshal gives them, and
// invalid UTF-8 is refused with CodeInvalidArgument. It fails if the
// runtime's decoder, or its fall-back to proto.Unmarshal, loses or changes
// anything.
func TestFlatRequestsOverLink(t *testing.T) {
	base := herdtest.Take()
	const proc = "/herd.test.v1.TestService/Scalars"
	p := newRawPeer(t, NewUnaryHandler(proc, func(ctx context.Context, req *testv1.Scalars) (*testv1.EchoResponse, error) {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
		return &testv1.EchoResponse{Message: hex.EncodeToString(b)}, err
	}))
	flat := marshal(t, &testv1.Scalars{FUint64: 7, FSint32: -3, FString: "héllo", FBytes: []byte{1, 2}, FDouble: 0.5, FEnum: 3, Far: 9})
	unknown := protowire.AppendVarint(protowire.AppendTag(bytes.Clone(flat), 999, protowire.VarintType), 5)
	wrongType := protowire.AppendFixed32(protowire.AppendTag(bytes.Clone(flat), 6, protowire.Fixed32Type), 1)
	for i, payload := range [][]byte{flat, unknown, wrongType} {
		id := uint64(i + 1)
		if err := p.write(p.frame(wire.Header{Procedure: proc, CallID: id}, payload), nil); err != nil {
			t.Fatal(err)
		}
		want := &testv1.Scalars{}
		if err := proto.Unmarshal(payload, want); err != nil {
			t.Fatal(err)
		}
		wantB, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		d := p.next()
		res := &testv1.EchoResponse{}
		if d.replyTo != id || d.hasError || proto.Unmarshal(d.payload, res) != nil {
			t.Fatalf("request %d: reply %+v", id, d)
		}
		if res.GetMessage() != hex.EncodeToString(wantB) {
			t.Errorf("request %d: the handler got %s, want %x", id, res.GetMessage(), wantB)
		}
	}
	bad := protowire.AppendBytes(protowire.AppendTag(bytes.Clone(flat), 14, protowire.BytesType), []byte{0xff})
	if err := p.write(p.frame(wire.Header{Procedure: proc, CallID: 4}, bad), nil); err != nil {
		t.Fatal(err)
	}
	if d := p.next(); d.replyTo != 4 || !d.hasError || d.code != CodeInvalidArgument {
		t.Errorf("invalid UTF-8: reply %+v, want CodeInvalidArgument", d)
	}
	if err := p.close(); !errors.Is(err, link.ErrPeerClosed) {
		t.Errorf("link ended with %v", err)
	}
	herdtest.Check(t, base, dispatchWait)
}
