//go:build linux

package runtime_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/internal/wire"
)

func init() {
	workerModes["fdflood"] = fdFloodWorker
}

// fdFloodWorker is a hostile worker (issue 9, finding 4): on its raw link
// it sends 40 frames that claim no descriptor, each with 250 descriptors
// attached, then writes "sent N" (how many sendmsg calls succeeded) to
// descriptor 4 and waits for the primary to close the link.
func fdFloodWorker() int {
	null, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 20
	}
	frame, err := wire.AppendFrameBytes(nil, &wire.Header{Procedure: "/herd.v1.ControlService/Listening"}, nil, 0)
	if err != nil {
		return 21
	}
	fds := make([]int, 250)
	for i := range fds {
		fds[i] = null
	}
	sent := 0
	for range 40 {
		if _, err := unix.SendmsgN(3, frame, unix.UnixRights(fds...), nil, unix.MSG_NOSIGNAL); err == nil {
			sent++
		}
	}
	fmt.Fprintf(os.NewFile(4, "report"), "sent %d\n", sent)
	buf := make([]byte, 4096)
	for {
		if n, err := unix.Read(3, buf); n <= 0 && err != unix.EINTR {
			return 0
		}
	}
}

// openFDs counts this process's open descriptors.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // the directory being read
}

// TestFDFloodFromWorker: a worker that floods the primary with descriptors
// no frame claims loses its link at the first such frame, with an error
// event; the primary holds none of them (measured while the worker is still
// alive) and its other worker keeps working.
func TestFDFloodFromWorker(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := newCluster(t)
	good := c.fork("idle")
	c.rec.waitFor(fmt.Sprintf("online %d", good.ID()))
	c.p.Setup(runtime.WithExtraFiles(w)) // for the flooding worker only
	before := openFDs()

	// The peak, sampled, for the figure in the log.
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if n := int64(openFDs()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	bad := c.fork("fdflood")
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("flooding worker: %v", err)
	}
	ev := c.rec.waitFor(fmt.Sprintf("error %d ", bad.ID()))
	held := openFDs() // the flooding worker is alive: its link would still be up without the fix
	close(stop)
	wg.Wait()
	t.Logf("primary descriptors: %d before, peak %d during the flood, %d after it (%s of 40 x 250)", before, peak.Load(), held, strings.TrimSpace(line))
	if !strings.Contains(ev, "invalid_argument") || !strings.Contains(ev, "no frame claims") {
		t.Errorf("error event %q, want invalid_argument and the unclaimed descriptors", ev)
	}
	// The worker's own process adds a few descriptors in the primary
	// (its pidfd, its exit pipe); none of the 10,000 sent.
	if held > before+8 {
		t.Errorf("the primary holds %d descriptors, %d before the flood", held, before)
	}
	res := &herdv1.ErrorEvent{}
	if err := good.Call(context.Background(), echoProcedure, &herdv1.ErrorEvent{Message: "hi"}, res); err != nil || res.GetMessage() != "echo:hi" {
		t.Errorf("call to the other worker: %v %v", res, err)
	}
	c.waitExit(bad)
}
