package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strings"
)

// Profiling the children: with -profile DIR the harness sets
// HERD_BENCH_PROFILE=DIR, and every Go child (herd primaries and workers,
// the raw ends, the single server) writes a CPU profile there,
// cpu-<role>-<pid>.pprof; with -trace DIR, an execution trace,
// trace-<role>-<pid>.out, which shows every goroutine wake-up.
const (
	envProfile = "HERD_BENCH_PROFILE"
	envTrace   = "HERD_BENCH_TRACE"
)

// startProfiles starts the profiles the environment asks for and returns
// the function that ends them; it must run before the process exits
// (herd workers call it from a drain hook, as the runtime exits them).
func startProfiles(role string) (stop func()) {
	var stops []func()
	name := strings.NewReplacer(":", "-", "/", "-").Replace(role)
	if dir := os.Getenv(envProfile); dir != "" {
		if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%s-%d.pprof", name, os.Getpid()))); err == nil {
			if err := pprof.StartCPUProfile(f); err == nil {
				stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
			} else {
				f.Close()
			}
		}
	}
	if dir := os.Getenv(envTrace); dir != "" {
		if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("trace-%s-%d.out", name, os.Getpid()))); err == nil {
			if err := trace.Start(f); err == nil {
				stops = append(stops, func() { trace.Stop(); f.Close() })
			} else {
				f.Close()
			}
		}
	}
	done := false
	return func() {
		if done {
			return
		}
		done = true
		for _, s := range stops {
			s()
		}
	}
}
