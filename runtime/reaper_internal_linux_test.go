//go:build linux

package runtime

import (
	"strings"
	"testing"
)

// FuzzParseProcStat: the parser never panics, and reads back the parent
// and state it is given whatever the command name holds.
func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("123 (sh) Z 1 123 123 0 -1"), "a) b (c")
	f.Add([]byte(""), "")
	f.Add([]byte("1 (x"), ")")
	f.Fuzz(func(t *testing.T, raw []byte, comm string) {
		parseProcStat(raw) // arbitrary text: no panic
		line := "42 (" + comm + ") S 7 42 42 0 -1 4194560\n"
		ppid, state, ok := parseProcStat([]byte(line))
		if !ok || ppid != 7 || state != 'S' {
			if strings.ContainsAny(comm, "\n") {
				return
			}
			t.Fatalf("parseProcStat(%q) = %d %c %v", line, ppid, state, ok)
		}
	})
}
