//go:build linux || darwin

package runtime

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	"github.com/herd-go/herd/runtime/internal/link"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
)

// sendPair is endpointPair for tests: ea serves local, eb calls it.
func sendPair(t *testing.T, local *Mux) (ea, eb *endpoint) {
	t.Helper()
	fa, fb, err := link.Pair()
	if err != nil {
		t.Fatal(err)
	}
	cfg := endpointConfig{logger: slog.New(slog.DiscardHandler)}.withDefaults()
	noErr := func(Code, string, error) {}
	ea = newEndpoint(cfg, NewMux(), local, nil, context.Background(), noErr)
	eb = newEndpoint(cfg, NewMux(), NewMux(), nil, context.Background(), noErr)
	if err := ea.start(fa); err != nil {
		t.Fatal(err)
	}
	if err := eb.start(fb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ea.link.Close()
		eb.link.Close()
		<-ea.closed
		<-eb.closed
	})
	return ea, eb
}

// TestSendWithFiles: a fire-and-forget message with files attached (the
// path sendCfg hands to sendFiles) delivers them, in order with plain
// messages sent before and after it, and the sender's duplicates are
// closed once Send returns (the leak check counts descriptors).
func TestSendWithFiles(t *testing.T) {
	base := herdtest.Take()
	type got struct {
		msg     string
		content string
	}
	ch := make(chan got, 3)
	local := NewMux()
	local.Register(NewUnaryHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		g := got{msg: req.GetMessage()}
		if fs := FilesFromContext(ctx); len(fs) == 1 {
			b := make([]byte, 16)
			n, _ := fs[0].ReadAt(b, 0)
			g.content = string(b[:n])
		}
		ch <- g
		return nil, nil
	}))
	_, eb := sendPair(t, local)

	f, err := os.CreateTemp(t.TempDir(), "send")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("attached"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, s := range []struct {
		msg  string
		opts []CallOption
	}{{"before", nil}, {"with", []CallOption{WithFiles(f)}}, {"after", nil}} {
		if err := eb.userSend(ctx, procEcho, &testv1.EchoRequest{Message: s.msg}, s.opts); err != nil {
			t.Fatalf("send %s: %v", s.msg, err)
		}
	}
	want := []got{{"before", ""}, {"with", "attached"}, {"after", ""}}
	for i := range want {
		select {
		case g := <-ch:
			if g != want[i] {
				t.Fatalf("message %d: got %+v, want %+v", i, g, want[i])
			}
		case <-eb.closed:
			t.Fatal("link ended")
		}
	}
	f.Close()
	eb.link.Close()
	<-eb.closed
	if err := eb.userSend(ctx, procEcho, &testv1.EchoRequest{}, nil); CodeOf(err) != CodeUnavailable {
		t.Fatalf("send on a closed link: %v, want unavailable", err)
	}
	var e *Error
	if err := eb.userSend(ctx, procEcho, &testv1.EchoRequest{}, []CallOption{WithFiles(f)}); !errors.As(err, &e) {
		t.Fatalf("send of a closed file on a closed link: %v, want an *Error", err)
	}
	herdtest.Check(t, base, dispatchWait)
}
