package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestPairedScenario checks that a paired scenario runs its reference
// next to every other system, alternating which runs first, and that the
// ratio it records and prints is that of each run to its own reference run:
// the fake machine here changes speed every two runs (every pair), so the
// per-pair ratios are exact where a ratio of medians would not be.
func TestPairedScenario(t *testing.T) {
	var calls []string
	speed := func() float64 { return float64(1 + len(calls)/2) } // the machine's "minute"
	fake := func(name string, base float64) *system {
		return &system{name: name, key: "fake_" + name, run: func(context.Context, *config) (map[string]float64, error) {
			v := base * speed()
			calls = append(calls, name)
			return map[string]float64{"value": v}, nil
		}}
	}
	sc := &scenario{name: "fake", unit: "req/s", refs: []string{"single"}, paired: true,
		systems: []*system{fake("single", 100), fake("a", 80), fake("b", 120)}}
	cfg := &config{rounds: 3, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	res := newResults()
	if err := runScenario(context.Background(), cfg, sc, res); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 12 {
		t.Fatalf("%d runs (%v), want 12: 2 per other system per round", len(calls), calls)
	}
	first := map[string][]bool{} // per system: whether it ran before its reference, per round
	for i := 0; i < len(calls); i += 2 {
		x, y := calls[i], calls[i+1]
		switch {
		case x == "single" && y != "single":
			first[y] = append(first[y], false)
		case y == "single" && x != "single":
			first[x] = append(first[x], true)
		default:
			t.Fatalf("pair %d is %s, %s: want a system and single", i/2, x, y)
		}
	}
	for _, name := range []string{"a", "b"} {
		f := first[name]
		if len(f) != 3 || f[0] == f[1] || f[1] == f[2] {
			t.Errorf("%s ran first in rounds %v: want 3 pairs alternating", name, f)
		}
	}
	for name, want := range map[string]float64{"a": 0.8, "b": 1.2} {
		got := res.vals[sc.pairKey(&system{key: "fake_" + name})]
		if len(got) != 3 {
			t.Fatalf("%s: %d pair ratios %v, want 3", name, len(got), got)
		}
		for _, r := range got {
			if r < want-1e-9 || r > want+1e-9 {
				t.Errorf("%s: pair ratio %v, want %v", name, r, want)
			}
		}
	}
	if n := len(res.vals["fake_single"]); n != 6 {
		t.Errorf("single has %d figures, want 6 (one per pair)", n)
	}
	var out bytes.Buffer
	printTable(&out, cfg, res)
	for _, want := range []string{"0.80x single", "1.20x single", "median of 3 paired runs"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
