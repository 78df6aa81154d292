//go:build linux || darwin

package link

import (
	"context"
	"errors"
	"testing"

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
