package actor

import (
	"context"
	"slices"
	"sync"
	"testing"
)

// TestClaimHandlesInOrder: a claimed mailbox runs nothing on its own;
// HandleClaimed runs messages on the caller while nothing is queued, and
// refuses once something was posted, which then goes first: the caller
// posts its message after it, as a TryHandle caller would.
func TestClaimHandlesInOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	me := goid()
	m := NewMailbox(func(s string) {
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
	})
	if !m.Claim() {
		t.Fatal("Claim of an idle, empty mailbox returned false")
	}
	if m.Claim() {
		t.Fatal("a second Claim returned true")
	}
	if m.TryHandle("x", nil) {
		t.Fatal("TryHandle on a claimed mailbox returned true")
	}
	for _, s := range []string{"a", "b"} {
		before := false
		if !m.HandleClaimed(s, func() { before = goid() == me }) || !before {
			t.Fatalf("HandleClaimed(%q) with nothing queued did not run it after before on the caller", s)
		}
	}
	// Posted while claimed: queued, not run (no drainer while claimed).
	if err := m.Post(context.Background(), "event"); err != nil {
		t.Fatal(err)
	}
	called := false
	if m.HandleClaimed("c", func() { called = true }) || called {
		t.Fatal("HandleClaimed with a message queued handled its own")
	}
	mu.Lock()
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("while claimed: handled %v, want [a b]", got)
	}
	mu.Unlock()
	m.Unclaim() // hands "event" to the drainer
	if err := m.Post(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	m.Close()
	recv(t, m.Done(), "Done")
	if !slices.Equal(got, []string{"a", "b", "event", "c"}) {
		t.Fatalf("handled %v, want [a b event c]", got)
	}
}

// TestClaimClosed: a closed mailbox cannot be claimed, and a claimed one
// closed meanwhile handles nothing more through HandleClaimed; Done closes
// only once the claim is given back.
func TestClaimClosed(t *testing.T) {
	var got []int
	m := NewMailbox(func(v int) { got = append(got, v) })
	if !m.Claim() {
		t.Fatal("Claim returned false")
	}
	m.Close()
	if m.HandleClaimed(1, nil) {
		t.Fatal("HandleClaimed after Close returned true")
	}
	if isClosed(m.Done()) {
		t.Fatal("Done closed while the mailbox was claimed")
	}
	m.Unclaim()
	recv(t, m.Done(), "Done")
	if m.Claim() {
		t.Fatal("Claim of a closed mailbox returned true")
	}
	if len(got) != 0 {
		t.Fatalf("handled %v, want nothing", got)
	}
}

// TestRunClaimed: RunClaimed runs the caller's function on the caller, in
// place of the handler, while nothing is queued and the mailbox is open;
// it refuses once something was posted or after Close; a panic in the
// function goes to the panic handler, as one in the handler would, and the
// claim is still the caller's.
func TestRunClaimed(t *testing.T) {
	var handled []string
	var panics []any
	m := NewMailbox(func(s string) { handled = append(handled, s) },
		WithPanicHandler(func(v any, _ []byte) { panics = append(panics, v) }))
	if !m.Claim() {
		t.Fatal("Claim returned false")
	}
	me := goid()
	ran := false
	if !m.RunClaimed(func() { ran = goid() == me }) || !ran {
		t.Fatal("RunClaimed with nothing queued did not run the function on the caller")
	}
	if !m.RunClaimed(func() { panic("boom") }) {
		t.Fatal("RunClaimed of a panicking function returned false")
	}
	if len(panics) != 1 || panics[0] != "boom" {
		t.Fatalf("panic handler got %v, want [boom]", panics)
	}
	if err := m.TryPost("queued"); err != nil {
		t.Fatal(err)
	}
	ran = false
	if m.RunClaimed(func() { ran = true }) || ran {
		t.Fatal("RunClaimed with a message queued ran the function")
	}
	if len(handled) != 0 {
		t.Fatalf("handled %v while claimed", handled)
	}
	m.Unclaim()
	m.Close()
	recv(t, m.Done(), "Done")
	if !slices.Equal(handled, []string{"queued"}) {
		t.Fatalf("handled %v, want [queued]", handled)
	}
	if m.Claim() || m.RunClaimed(func() { ran = true }) || ran {
		t.Fatal("a closed mailbox was claimed or ran the function")
	}
}
