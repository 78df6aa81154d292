//go:build unix

package runtime

import "testing"

// TestMemberSet checks the bookkeeping of the shared and reuseport handles:
// values by member, join order, and a cursor that stays on its member when
// an earlier one leaves and on the same index when a later one does.
func TestMemberSet(t *testing.T) {
	var s memberSet[int]
	a, b, c := &membership{id: 1}, &membership{id: 2}, &membership{id: 3}
	s.join(a, 10)
	s.join(b, 20)
	s.join(c, 30)
	s.next = 2 // on c
	if got := s.leave(a); got != 10 {
		t.Errorf("leave(a) = %d, want 10", got)
	}
	if s.len() != 2 || s.order[s.next] != c {
		t.Fatalf("after a left: len %d, cursor on %v; want 2, on c", s.len(), s.order[s.next])
	}
	if got := s.leave(c); got != 30 || s.next != 1 {
		t.Errorf("leave(c) = %d, cursor %d; want 30, 1", got, s.next)
	}
	if got := s.leave(c); got != 0 {
		t.Errorf("leave of a non-member = %d, want 0", got)
	}
	if s.get(b) != 20 || s.get(a) != 0 || s.len() != 1 {
		t.Errorf("get(b) %d, get(a) %d, len %d; want 20, 0, 1", s.get(b), s.get(a), s.len())
	}
}
