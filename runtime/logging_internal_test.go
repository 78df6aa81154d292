package runtime

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzLineWriter writes arbitrary data in arbitrary pieces through a
// lineWriter: every line out is whole and prefixed, no longer than
// MaxOutputLine plus the marker, and the text without prefixes and cut
// remainders is the text in.
func FuzzLineWriter(f *testing.F) {
	f.Add([]byte("hello\nworld"), uint8(3))
	f.Add([]byte("\n\n\n"), uint8(1))
	f.Add(bytes.Repeat([]byte("x"), MaxOutputLine+5), uint8(200))
	f.Add(append(bytes.Repeat([]byte("y"), MaxOutputLine), "\nz\n"...), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var out bytes.Buffer
		l := newLineWriter(&out, 7)
		n := int(step) + 1
		for rest := data; len(rest) > 0; {
			k := min(n, len(rest))
			if w, err := l.Write(rest[:k]); w != k || err != nil {
				t.Fatalf("Write = %d, %v", w, err)
			}
			rest = rest[k:]
		}
		l.flush()
		got := out.String()
		if len(data) == 0 {
			if got != "" {
				t.Fatalf("output %q for no input", got)
			}
			return
		}
		if !strings.HasSuffix(got, "\n") {
			t.Fatalf("output does not end with a newline: %q", got)
		}
		// Expected: each input line, cut at MaxOutputLine with the marker.
		var want strings.Builder
		in := strings.TrimSuffix(string(data), "\n")
		for _, line := range strings.Split(in, "\n") {
			want.WriteString("[worker 7] ")
			if len(line) > MaxOutputLine {
				want.WriteString(line[:MaxOutputLine] + outputCutMarker)
			} else {
				want.WriteString(line)
			}
			want.WriteByte('\n')
		}
		if got != want.String() {
			t.Fatalf("output %.200q, want %.200q", got, want.String())
		}
	})
}
