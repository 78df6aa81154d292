package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// writeJSON writes the median of every figure as one flat JSON object,
// keys sorted. A key is absent when its system was not available or failed.
func writeJSON(path string, res *results) error {
	m := res.medians()
	for k, v := range m {
		m[k] = round(v)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// round keeps three decimals: finer digits are noise.
func round(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	return math.Round(v*1000) / 1000
}
