package runtime

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// stderrTailBytes bounds what the primary keeps of one worker's stderr.
const stderrTailBytes = 4 << 10

// stderrTail relays a worker's stderr to where it would have gone (the
// primary's stderr, or WithOutput's writer) and keeps its last bytes, so
// that a crash or a boot failure can be reported with the worker's last
// words (a Go panic's message). It holds at most stderrTailBytes, whatever
// the worker writes.
type stderrTail struct {
	lines int // how many lines String returns

	mu   sync.Mutex
	buf  []byte
	done chan struct{} // closed at the pipe's EOF

	// After capture: everything the worker writes, up to capLimit bytes
	// (a goroutine dump, for the watchdog), and how much more was cut.
	capturing bool
	capLimit  int
	capBuf    []byte
	capCut    int
}

// capture keeps, from now on, up to limit bytes of what the worker writes,
// beside the tail (captured returns them).
func (t *stderrTail) capture(limit int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.capturing, t.capLimit = true, limit
}

// captured returns what capture kept, with a note of what was cut.
func (t *stderrTail) captured() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(bytes.TrimRight(t.capBuf, "\n"))
	if t.capCut > 0 {
		s += fmt.Sprintf("\n[... %d more bytes not kept]", t.capCut)
	}
	return s
}

func newStderrTail(lines int) *stderrTail {
	return &stderrTail{lines: lines, done: make(chan struct{})}
}

// start copies r to dst until EOF, keeping the tail; it owns r.
func (t *stderrTail) start(r *os.File, dst io.Writer) {
	go func() {
		defer close(t.done)
		defer r.Close()
		chunk := make([]byte, 4096)
		for {
			n, err := r.Read(chunk)
			if n > 0 {
				_, _ = dst.Write(chunk[:n]) // the worker's output still reaches it
				t.keep(chunk[:n])
			}
			if err != nil {
				return
			}
		}
	}()
}

func (t *stderrTail) keep(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.capturing {
		n := min(len(b), t.capLimit-len(t.capBuf))
		t.capBuf = append(t.capBuf, b[:n]...)
		t.capCut += len(b) - n
	}
	if len(b) >= stderrTailBytes {
		t.buf = append(t.buf[:0], b[len(b)-stderrTailBytes:]...)
		return
	}
	if over := len(t.buf) + len(b) - stderrTailBytes; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, b...)
}

// wait waits for the end of the worker's stderr (its exit closes it, unless
// a process it started holds it open), at most d, and returns the tail.
func (t *stderrTail) wait(d time.Duration) string {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.done:
	case <-timer.C:
	}
	return t.String()
}

// String returns the last lines kept, without the final newline.
func (t *stderrTail) String() string {
	t.mu.Lock()
	b := bytes.TrimRight(t.buf, "\n")
	s := string(b)
	t.mu.Unlock()
	lines := strings.Split(s, "\n")
	if len(lines) > t.lines {
		lines = lines[len(lines)-t.lines:]
	}
	return strings.Join(lines, "\n")
}
