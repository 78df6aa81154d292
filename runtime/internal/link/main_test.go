//go:build linux || darwin

package link

import (
	"os"
	"testing"
)

// TestMain starts and ends one link first, so that the netpoller's own
// descriptors exist before any test counts descriptors.
func TestMain(m *testing.M) {
	a, b, err := Pair()
	if err != nil {
		panic(err)
	}
	l, err := New(a, discard)
	if err != nil {
		panic(err)
	}
	b.Close()
	<-l.Done()
	os.Exit(m.Run())
}
