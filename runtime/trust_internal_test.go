//go:build unix

package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestAllowedRoot(t *testing.T) {
	wt := workerTrust{unixDirs: []string{"/srv/app", "/run/x"}}
	for _, tc := range []struct {
		dir  string
		root string
		rest []string
		ok   bool
	}{
		{"/srv/app", "/srv/app", nil, true},
		{"/srv/app/a/b", "/srv/app", []string{"a", "b"}, true},
		{"/run/x/s", "/run/x", []string{"s"}, true},
		{"/srv/apple", "", nil, false}, // a prefix of the name is not the directory
		{"/srv", "", nil, false},
		{"/", "", nil, false},
		{"/etc", "", nil, false},
	} {
		root, rest, ok := wt.allowedRoot(tc.dir)
		if ok != tc.ok || root != tc.root || !slices.Equal(rest, tc.rest) {
			t.Errorf("allowedRoot(%q) = %q, %q, %t; want %q, %q, %t", tc.dir, root, rest, ok, tc.root, tc.rest, tc.ok)
		}
	}
	if _, _, ok := (&workerTrust{unixDirs: []string{"/"}}).allowedRoot("/any/where"); !ok {
		t.Error("the root directory does not allow what is below it")
	}
}

// TestOpenUnixSocketPaths: paths are checked after cleaning (no way up
// with ".."), relative ones are in the worker's directory, and a symbolic
// link anywhere below the allowed directory is refused, even one that
// points back inside it.
func TestOpenUnixSocketPaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "a"), filepath.Join(dir, "inside")); err != nil {
		t.Fatal(err)
	}
	wt := workerTrust{dir: filepath.Join(dir, "a"), unixDirs: []string{filepath.Join(dir, "a")}, modeLimit: 0o600}
	for _, tc := range []struct {
		path string
		want error // nil: allowed
	}{
		{"s.sock", nil},
		{"b/s.sock", nil},
		{filepath.Join(dir, "a", "b", "..", "s.sock"), nil},
		{filepath.Join(dir, "a", "..", "s.sock"), ErrUnixPathNotAllowed},
		{"../s.sock", ErrUnixPathNotAllowed},
		{filepath.Join(dir, "inside", "s.sock"), ErrUnixPathNotAllowed}, // outside lexically
		{"/", ErrUnixPathNotAllowed},
		{"missing/s.sock", os.ErrNotExist},
	} {
		s, err := wt.openUnixSocket(tc.path, 0)
		if s != nil {
			s.remove()
		}
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.path, err, tc.want)
		}
	}
	// A link below the allowed directory, pointing back inside it.
	if err := os.Symlink(filepath.Join(dir, "a", "b"), filepath.Join(dir, "a", "loop")); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.openUnixSocket("loop/s.sock", 0); !errors.Is(err, ErrUnixPathNotAllowed) {
		t.Errorf("through a link inside the directory: %v", err)
	}
	// The mode: 0600 when none is asked, nothing beyond the limit.
	s, err := wt.openUnixSocket("m.sock", 0)
	if err != nil || s.mode != 0o600 {
		t.Errorf("default mode: %v, %v", s, err)
	}
	s.remove()
	if _, err := wt.openUnixSocket("m.sock", 0o660); !errors.Is(err, ErrUnixModeNotAllowed) {
		t.Errorf("mode 0660 with limit 0600: %v", err)
	}
}
