//go:build linux || darwin

package link

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestReadIdle: the WithReadIdle function runs after the handler has had
// every whole frame of a read, before the reader reads again (a partial
// frame waiting for its end does not delay it), and once more as the
// reader leaves.
func TestReadIdle(t *testing.T) {
	checkLeaks(t)
	var mu sync.Mutex
	var log []string
	idle := make(chan struct{}, 8)
	add := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	h := func(env *wire.Envelope, files []*os.File) error {
		add(fmt.Sprint("f", env.CallID))
		return nil
	}
	l, raw := rawPair(t, h, WithReadIdle(func() { add("i"); idle <- struct{}{} }))
	var b []byte
	for id := uint64(1); id <= 4; id++ {
		b = append(b, frameBytes(t, wire.Header{Procedure: "/t.T/P", CallID: id}, benchPayload)...)
	}
	cut := len(b) - 3 // frame 4 is cut short
	rawWrite(t, raw, b[:cut])
	wait := func() {
		t.Helper()
		select {
		case <-idle:
		case <-time.After(10 * time.Second):
			t.Fatal("the read-idle function was not called")
		}
	}
	wait()
	rawWrite(t, raw, b[cut:])
	wait()
	unix.Shutdown(raw, unix.SHUT_WR) // the end of the stream ends the link
	wait()
	waitDone(t, l)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"f1", "f2", "f3", "i", "f4", "i", "i"}; !slices.Equal(log, want) {
		t.Fatalf("got %v, want %v", log, want)
	}
}
