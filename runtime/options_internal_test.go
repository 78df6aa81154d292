package runtime

import (
	"testing"
	"time"
)

// TestHelloTimeoutDefault: a primary gives workers DefaultHelloTimeout to
// handshake unless told otherwise; a negative timeout waits forever.
func TestHelloTimeoutDefault(t *testing.T) {
	if got := NewPrimary().settings.hello; got != DefaultHelloTimeout || got <= 0 {
		t.Errorf("default hello timeout %v, want DefaultHelloTimeout (%v)", got, DefaultHelloTimeout)
	}
	if got := NewPrimary(WithHelloTimeout(time.Second)).settings.hello; got != time.Second {
		t.Errorf("WithHelloTimeout(1s) gives %v", got)
	}
	if got := NewPrimary(WithHelloTimeout(-1)).settings.hello; got >= 0 {
		t.Errorf("WithHelloTimeout(-1) gives %v, want no timeout", got)
	}
}
