//go:build linux || darwin

package runtime

import (
	"context"
	"io"
	"os"
	"testing"

	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
)

// TestResponseOverLink serves a call over a link with a handler that
// returns a *Response: the file attached to the reply reaches the caller
// through WithResponseFiles, and what the after step sends the caller
// arrives after the reply (the caller's reader completed the call before it
// read the step's message).
func TestResponseOverLink(t *testing.T) {
	const procNote = "/herd.test.v1.TestService/Note"
	local := NewMux()
	var server *endpoint // set before the call
	err := local.Register(NewResponseHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*Response[testv1.EchoResponse], error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer r.Close()
		_, err = w.WriteString(req.GetMessage())
		w.Close()
		if err != nil {
			return nil, err
		}
		res := NewResponse(&testv1.EchoResponse{Message: "attached"}).AttachFiles(r)
		return res.AfterReply(func() {
			_ = (controlConn{server}).Send(context.Background(), procNote, &testv1.EchoRequest{Message: "after"})
		}), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	ea, b := interceptPair(t, local, nil, nil)
	server = ea
	noted := make(chan int, 1)
	if err := b.local.Register(NewUnaryHandler(procNote, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		b.pendMu.Lock()
		noted <- len(b.pending)
		b.pendMu.Unlock()
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	var files []*os.File
	res := &testv1.EchoResponse{}
	if err := (controlConn{b}).Call(context.Background(), procEcho, &testv1.EchoRequest{Message: "through the reply"}, res, WithResponseFiles(&files)); err != nil {
		t.Fatalf("call: %v", err)
	}
	if res.GetMessage() != "attached" || len(files) != 1 {
		t.Fatalf("reply %q with %d files, want %q with 1", res.GetMessage(), len(files), "attached")
	}
	got, err := io.ReadAll(files[0])
	files[0].Close()
	if err != nil || string(got) != "through the reply" {
		t.Errorf("the attached pipe reads %q, %v", got, err)
	}
	if n := <-noted; n != 0 {
		t.Errorf("the after step's message arrived with %d calls pending: before the reply", n)
	}
}

// TestResponseAttachFailure checks that a file that cannot be attached
// turns the reply into a CodeInternal error, and that the after step still
// runs.
func TestResponseAttachFailure(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "closed")
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // its descriptor cannot be duplicated any more
	ran := make(chan struct{})
	m := NewMux()
	if err := m.Register(NewResponseHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*Response[testv1.EchoResponse], error) {
		return NewResponse(&testv1.EchoResponse{}).AttachFiles(f).AfterReply(func() { close(ran) }), nil
	})); err != nil {
		t.Fatal(err)
	}
	err = m.Call(context.Background(), procEcho, &testv1.EchoRequest{}, &testv1.EchoResponse{})
	if CodeOf(err) != CodeInternal {
		t.Errorf("call: %v, want CodeInternal", err)
	}
	<-ran
}
