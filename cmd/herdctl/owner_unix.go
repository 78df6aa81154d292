//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// socketOwner is " (mode 0600, owner uid 0)" for the socket at path, for
// a permission error.
func socketOwner(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf(" (mode %#o, owner uid %d)", fi.Mode().Perm(), st.Uid)
}
