//go:build !linux

package runtime

import "errors"

// processState is Linux-only.
func processState(pid int) string { return "" }

func isStopped(state string) bool { return state != "" && (state[0] == 'T' || state[0] == 't') }

// processRSS is Linux-only: a pool's RSS limit (WithRecycleRSS) samples
// nothing elsewhere.
func processRSS(pid int) (uint64, error) {
	return 0, errors.New("herd: resident memory of a process: unsupported on this system")
}
