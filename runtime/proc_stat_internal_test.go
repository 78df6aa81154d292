package runtime

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// parseProcStat reads the state, parent, utime+stime and rss after the
// last ')' of the command name, which may hold spaces and parentheses; a
// line it cannot read is errProcStat.
func TestParseProcStat(t *testing.T) {
	stat := "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 25 0 0 20 0 8 0 12345 800000000 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	got, err := parseProcStat([]byte(stat), 4096)
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{state: 'S', ppid: 1, cpu: 1750 * time.Millisecond, rss: 2560 * 4096}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{
		"", "1 (x", "1 (x) S 1 2 3",
		"1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 25 0 0 20 0 8 0 1 1 1",
		"1 (x) S x 1 1 0 -1 0 0 0 0 0 1 25 0 0 20 0 8 0 1 1 1",
		"1 (x) SS 1 1 1 0 -1 0 0 0 0 0 1 25 0 0 20 0 8 0 1 1 1",
		"1 (x) S 1 1 1 0 -1 0 0 0 0 0 1 25 0 0 20 0 8 0 1 1 18446744073709551615",
	} {
		if _, err := parseProcStat([]byte(bad), 4096); !errors.Is(err, errProcStat) {
			t.Errorf("parseProcStat(%q) = %v; want errProcStat", bad, err)
		}
	}
}

// FuzzParseProcStat: the parser never panics, its errors wrap
// errProcStat, it never reports negative CPU time, and it reads back the
// fields it is given whatever the command name holds.
func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("123 (sh) Z 1 123 123 0 -1"), "a) b (c")
	f.Add([]byte(""), "")
	f.Add([]byte("1 (x"), ")")
	f.Add([]byte("4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 25 0 0 20 0 8 0 12345 800000000 2560 18446744073709551615 1 1"), "x")
	f.Add([]byte("1 (x) S 1 1 1 0 -1 0 0 0 0 0 18446744073709551615 18446744073709551615 0 0 20 0 8 0 1 1 -5"), "")
	f.Fuzz(func(t *testing.T, raw []byte, comm string) {
		st, err := parseProcStat(raw, 4096)
		if err != nil && !errors.Is(err, errProcStat) {
			t.Fatalf("error %v does not wrap errProcStat", err)
		}
		if st.cpu < 0 {
			t.Fatalf("negative CPU time %v", st.cpu)
		}
		line := "42 (" + comm + ") S 7 42 42 0 -1 4194560 0 0 0 0 3 4 0 0 20 0 1 0 1 1 5 1 1\n"
		st, err = parseProcStat([]byte(line), 4096)
		if want := (procStat{state: 'S', ppid: 7, cpu: 70 * time.Millisecond, rss: 5 * 4096}); err != nil || st != want {
			if strings.ContainsAny(comm, "\n") {
				return
			}
			t.Fatalf("parseProcStat(%q) = %+v, %v; want %+v", line, st, err, want)
		}
	})
}
