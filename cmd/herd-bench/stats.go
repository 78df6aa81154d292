package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
)

// results collects the figures of every run, by key.
type results struct {
	vals    map[string][]float64
	skipped map[string]string // JSON key of a system → why it did not run
	failed  map[string]error  // JSON key of a system → why it failed
	ran     []*scenario       // in the order they ran
	// tableOnly are the keys left out of the JSON file.
	tableOnly map[string]bool
}

func newResults() *results {
	return &results{
		vals:      make(map[string][]float64),
		skipped:   make(map[string]string),
		failed:    make(map[string]error),
		tableOnly: make(map[string]bool),
	}
}

func (r *results) noteScenario(sc *scenario) {
	if !slices.Contains(r.ran, sc) {
		r.ran = append(r.ran, sc)
	}
}

// add records one run's figures: the main one under "value", the extras
// the system declares under their keys. Anything else is ignored.
func (r *results) add(sc *scenario, sys *system, figs map[string]float64) {
	r.noteScenario(sc)
	if v, ok := figs["value"]; ok && isFinite(v) {
		r.vals[sys.key] = append(r.vals[sys.key], v)
	}
	if sys.tableOnly {
		r.tableOnly[sys.key] = true
	}
	for _, e := range sys.extras {
		if v, ok := figs[e.key]; ok && isFinite(v) {
			r.vals[e.key] = append(r.vals[e.key], v)
		}
		if e.tableOnly {
			r.tableOnly[e.key] = true
		}
	}
}

func (r *results) skip(sc *scenario, sys *system, why string) {
	r.noteScenario(sc)
	r.skipped[sys.key] = why
}

func (r *results) fail(sc *scenario, sys *system, err error) {
	r.noteScenario(sc)
	r.failed[sys.key] = err
}

// median returns the median of key's figures, and whether it has any.
func (r *results) median(key string) (float64, bool) {
	v := r.vals[key]
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}

// medians returns the median of every key with figures, JSON keys only.
func (r *results) medians() map[string]float64 {
	out := make(map[string]float64, len(r.vals))
	for k := range r.vals {
		if r.tableOnly[k] {
			continue
		}
		if m, ok := r.median(k); ok {
			out[k] = m
		}
	}
	return out
}

// median returns the median of xs (the mean of the middle two for an even
// count); xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// durationMedian returns the median of samples, which it sorts in place.
func durationMedianUS(samples []int64) float64 {
	if len(samples) == 0 {
		return math.NaN()
	}
	slices.Sort(samples)
	n := len(samples)
	if n%2 == 1 {
		return float64(samples[n/2]) / 1e3
	}
	return float64(samples[n/2-1]+samples[n/2]) / 2 / 1e3
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// formatFigure prints v in unit with three significant digits, rates with
// k and M suffixes.
func formatFigure(v float64, unit string) string {
	switch unit {
	case "msgs/s", "req/s":
		switch {
		case v >= 1e6:
			return sig3(v/1e6) + "M " + unit
		case v >= 1e3:
			return sig3(v/1e3) + "k " + unit
		}
		return sig3(v) + " " + unit
	case "x":
		return strconv.FormatFloat(v, 'f', 3, 64)
	case "failed", "requests", "conns": // counts, or the median of an even number of them
		return strconv.FormatFloat(v, 'f', -1, 64) + " " + unit
	}
	return sig3(v) + " " + unit
}

// sig3 formats v with three significant digits (no exponent).
func sig3(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// formatRatio prints a ratio to a reference system.
func formatRatio(r float64, ref string) string {
	if !isFinite(r) {
		return "-"
	}
	var s string
	switch {
	case r >= 100:
		s = fmt.Sprintf("%.0fx", r)
	case r >= 10:
		s = fmt.Sprintf("%.1fx", r)
	default:
		s = fmt.Sprintf("%.2fx", r)
	}
	return s + " " + ref
}
