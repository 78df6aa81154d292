package runtime_test

import (
	"testing"

	"github.com/herd-go/herd/runtime"
)

func TestParseCPUMax(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"max 100000\n", 0},
		{"200000 100000\n", 2},
		{"150000 100000", 2},
		{"50000 100000", 1},
		{"100000", 1},
		{"", 0},
		{"-1 100000", 0},
		{"100000 0", 0},
		{"x 100000", 0},
		{"1 2 3", 0},
		{"9223372036854775807 1", 0},
	} {
		if got := runtime.ParseCPUMax(tt.in); got != tt.want {
			t.Errorf("parseCPUMax(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if n := runtime.DefaultPoolSize(); n < 1 {
		t.Errorf("DefaultPoolSize() = %d", n)
	}
}

// FuzzParseCPUMax: any content of cpu.max gives a size in 0..2^20 and no
// panic.
func FuzzParseCPUMax(f *testing.F) {
	for _, s := range []string{"max 100000", "200000 100000", "150000 100000\n", "", "1 0", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n := runtime.ParseCPUMax(s); n < 0 || n > 1<<20 {
			t.Errorf("parseCPUMax(%q) = %d", s, n)
		}
	})
}
