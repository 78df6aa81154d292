package runtime

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestStderrTailBounded: whatever a worker writes reaches the destination
// whole, and the tail keeps at most stderrTailBytes and its last lines.
func TestStderrTailBounded(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var dst bytes.Buffer
	tail := newStderrTail(3)
	tail.start(r, &dst)
	var want strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	w.WriteString(want.String())
	w.Close()
	got := tail.wait(time.Minute)
	if got != "line 1997\nline 1998\nline 1999" {
		t.Errorf("tail %q", got)
	}
	if dst.String() != want.String() {
		t.Errorf("destination got %d bytes, want %d", dst.Len(), want.Len())
	}
	if n := len(tail.buf); n > stderrTailBytes {
		t.Errorf("kept %d bytes, limit %d", n, stderrTailBytes)
	}
	big := newStderrTail(10)
	big.keep(bytes.Repeat([]byte("x"), 3*stderrTailBytes))
	if n := len(big.buf); n != stderrTailBytes {
		t.Errorf("kept %d bytes of one big write, want %d", n, stderrTailBytes)
	}
}
