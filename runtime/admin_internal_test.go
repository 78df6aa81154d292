package runtime

import (
	"testing"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// The event log keeps the most recent events in order; a reader that fell
// behind learns how many it missed and resumes at the oldest kept; a
// reader of an earlier primary (after beyond the newest) starts from now.
func TestEventLog(t *testing.T) {
	l := newEventLog(4)
	if evs, last, missed, _ := l.since(0, 10); len(evs) != 0 || last != 0 || missed != 0 {
		t.Fatalf("empty log: %d events, last %d, missed %d", len(evs), last, missed)
	}
	_, _, _, changed := l.since(0, 10)
	for i := range 6 {
		l.add(&herdv1.ForkEvent{Worker: &herdv1.Worker{Id: uint64(i + 1)}})
	}
	select {
	case <-changed:
	default:
		t.Fatal("a waiting reader was not woken")
	}
	evs, last, missed, _ := l.since(0, 10)
	if missed != 2 || last != 6 || len(evs) != 4 || evs[0].GetSeq() != 3 || evs[0].GetFork().GetWorker().GetId() != 3 {
		t.Fatalf("behind: %d events from %d, last %d, missed %d", len(evs), evs[0].GetSeq(), last, missed)
	}
	evs, last, missed, _ = l.since(4, 1)
	if missed != 0 || last != 5 || len(evs) != 1 || evs[0].GetSeq() != 5 {
		t.Fatalf("after 4, one: %v last %d missed %d", evs, last, missed)
	}
	if evs, last, _, _ := l.since(100, 10); len(evs) != 0 || last != 6 {
		t.Fatalf("after 100: %d events, last %d; want none, last 6", len(evs), last)
	}
	// Events are copies: a handler that changes its event changes nothing here.
	ev := &herdv1.ExitEvent{Worker: &herdv1.Worker{Id: 9}, Code: 1}
	l.add(ev)
	ev.Code = 2
	if evs, _, _, _ := l.since(6, 10); evs[0].GetExit().GetCode() != 1 {
		t.Fatal("the log shares the handler's event")
	}
	l.add(&herdv1.HelloRequest{}) // not an event: not recorded
	if l.last() != 7 {
		t.Fatalf("last %d after a non-event; want 7", l.last())
	}
}
