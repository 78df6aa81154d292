//go:build linux || darwin

package runtime

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// A user handler that runs on the link's reader (its lane was idle) and
// blocks hands the reader role on: a control request written behind it is
// answered while it still blocks, and the user message behind it waits for
// its turn.
func TestInlineHandlerDoesNotHoldUpControl(t *testing.T) {
	base := herdtest.Take()
	p := newRawPeer(t)
	req := marshal(t, &testv1.EchoRequest{Message: "x"})
	var b []byte
	b = append(b, p.frame(wire.Header{Procedure: procBlock, CallID: 1}, req)...)
	b = append(b, p.frame(wire.Header{Procedure: procEcho, CallID: 2}, req)...)
	// Flagged as control: refused on the control lane, answered at once.
	b = append(b, p.frame(wire.Header{Procedure: procEcho, CallID: 3, Flags: wire.FlagSystem}, req)...)
	if err := p.write(b, nil); err != nil {
		t.Fatal(err)
	}
	if d := p.next(); d.replyTo != 3 || !d.hasError || d.code != CodeInvalidArgument {
		t.Fatalf("while the handler blocks, got %+v; want the refusal of call 3", d)
	}
	close(p.block)
	if d := p.next(); d.replyTo != 1 || d.hasError {
		t.Fatalf("got %+v, want the reply to call 1", d)
	}
	d := p.next()
	res := &testv1.EchoResponse{}
	if d.replyTo != 2 || d.hasError || proto.Unmarshal(d.payload, res) != nil || res.GetMessage() != "echo:x" {
		t.Fatalf("got %+v, want the echo of call 2", d)
	}
	p.echo(4, "after") // the reader goes on after the promotion
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}
