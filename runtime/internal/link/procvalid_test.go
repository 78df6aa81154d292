//go:build linux || darwin

package link

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestProcedureCheckedOnce: a link skips the UTF-8 check of a procedure it
// has just encoded, and still refuses an invalid one, whatever the caller
// set in ProcedureValid, before and after valid ones.
func TestProcedureCheckedOnce(t *testing.T) {
	checkLeaks(t)
	c := newCollector(false)
	a, _ := linkPair(t, discard, c.handle)
	ctx := context.Background()
	valid, invalid := "/t.T/P", "/t.T/\xff"
	send := func(proc string, claim bool) error {
		h := wire.Header{Procedure: proc, ProcedureValid: claim}
		return a.Send(ctx, &h, benchPayload, nil)
	}
	for i, tc := range []struct {
		proc  string
		claim bool
		ok    bool
	}{
		{invalid, true, false}, // a caller's claim is not trusted
		{valid, false, true},
		{valid, false, true}, // the same string: not checked again
		{invalid, true, false},
		{"/t.T/" + string([]byte{'P'}), false, true}, // equal content, another string
		{valid, true, true},
	} {
		err := send(tc.proc, tc.claim)
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, wire.ErrInvalidUTF8)) {
			t.Fatalf("send %d (%q): %v", i, tc.proc, err)
		}
	}
	for i, r := range c.wait(t, 4) {
		if r.hdr.Procedure != valid {
			t.Fatalf("frame %d: procedure %q", i, r.hdr.Procedure)
		}
	}
	a.Close()
}

// TestReceivedProcedureChecked: the reader skips the UTF-8 check of a
// procedure equal to the one it decoded last, and still refuses an invalid
// one, whether it follows valid frames to the same service, a name longer
// than it remembers, or an empty procedure; the valid frames before it
// arrive in order.
func TestReceivedProcedureChecked(t *testing.T) {
	long := "/t.T/" + strings.Repeat("L", maxKnownProc)
	for _, prev := range []string{"/t.T/P", long, ""} {
		t.Run(fmt.Sprintf("after%d", len(prev)), func(t *testing.T) {
			checkLeaks(t)
			c := newCollector(false)
			l, raw := rawPair(t, c.handle)
			frame := func(proc string) []byte {
				// frameBytes would refuse an invalid procedure.
				body := protowire.AppendTag(nil, 1, protowire.BytesType)
				body = protowire.AppendString(body, proc)
				return append(be32(uint32(len(body))), body...)
			}
			var stream []byte
			for range 3 {
				stream = append(stream, frame(prev)...)
			}
			stream = append(stream, frame(prev+"\xff")...)
			stream = append(stream, frame(prev)...) // never dispatched
			rawWrite(t, raw, stream)
			waitDone(t, l)
			var pe *wire.ProtocolError
			if err := l.Err(); !errors.As(err, &pe) {
				t.Fatalf("link ended with %v, want a *wire.ProtocolError", err)
			}
			got := c.wait(t, 3)
			if len(got) != 3 {
				t.Fatalf("%d frames dispatched, want the 3 valid ones", len(got))
			}
			for _, r := range got {
				if r.hdr.Procedure != prev {
					t.Fatalf("procedure %q, want %q", r.hdr.Procedure, prev)
				}
			}
		})
	}
}
