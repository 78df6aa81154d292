package runtime

import (
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// DefaultAdminEventBuffer is how many of the most recent cluster events a
// primary serving an admin socket keeps for Watch; a client that falls
// further behind is told how many it missed.
const DefaultAdminEventBuffer = 1024

// maxWatchEvents bounds the events of one Watch response, and maxWatchWait
// how long a Watch waits for the first.
const (
	maxWatchEvents = 256
	maxWatchWait   = 30 * time.Second
)

// eventLog is the admin socket's event stream: a ring of the most recent
// cluster events, numbered in delivery order. Watch reads it by long poll,
// so a client holds no state in the primary between calls and a slow one
// costs nothing but the events it misses.
type eventLog struct {
	mu      sync.Mutex
	ring    []*herdv1.AdminEvent
	head    int    // index of the oldest event in ring
	n       int    // events in ring
	seq     uint64 // sequence number of the newest event, 0 before the first
	changed chan struct{}
}

func newEventLog(size int) *eventLog {
	return &eventLog{ring: make([]*herdv1.AdminEvent, size), changed: make(chan struct{})}
}

// record adds ev to the admin socket's event stream, if one is served. It
// runs where the event was delivered (a worker's drainer, the pool's
// goroutine), after the user's handlers, so the stream's order is the
// delivery order.
func (p *Primary) record(ev proto.Message) {
	if l := p.events.Load(); l != nil {
		l.add(ev)
	}
}

// add appends a copy of ev (the user's handlers had the original and may
// keep it) and wakes the waiting Watch calls.
func (l *eventLog) add(ev proto.Message) {
	ae := &herdv1.AdminEvent{Time: timestamppb.Now()}
	switch e := proto.Clone(ev).(type) {
	case *herdv1.ForkEvent:
		ae.Event = &herdv1.AdminEvent_Fork{Fork: e}
	case *herdv1.OnlineEvent:
		ae.Event = &herdv1.AdminEvent_Online{Online: e}
	case *herdv1.ListeningEvent:
		ae.Event = &herdv1.AdminEvent_Listening{Listening: e}
	case *herdv1.DisconnectEvent:
		ae.Event = &herdv1.AdminEvent_Disconnect{Disconnect: e}
	case *herdv1.ExitEvent:
		ae.Event = &herdv1.AdminEvent_Exit{Exit: e}
	case *herdv1.ErrorEvent:
		ae.Event = &herdv1.AdminEvent_Error{Error: e}
	case *herdv1.ReadyEvent:
		ae.Event = &herdv1.AdminEvent_Ready{Ready: e}
	case *herdv1.RestartScheduledEvent:
		ae.Event = &herdv1.AdminEvent_RestartScheduled{RestartScheduled: e}
	case *herdv1.SlotFailedEvent:
		ae.Event = &herdv1.AdminEvent_SlotFailed{SlotFailed: e}
	case *herdv1.ReloadStartedEvent:
		ae.Event = &herdv1.AdminEvent_ReloadStarted{ReloadStarted: e}
	case *herdv1.ReloadFinishedEvent:
		ae.Event = &herdv1.AdminEvent_ReloadFinished{ReloadFinished: e}
	case *herdv1.ReloadAbortedEvent:
		ae.Event = &herdv1.AdminEvent_ReloadAborted{ReloadAborted: e}
	case *herdv1.RecycledEvent:
		ae.Event = &herdv1.AdminEvent_Recycled{Recycled: e}
	default:
		return // an event kind the stream does not carry
	}
	l.mu.Lock()
	l.seq++
	ae.Seq = l.seq
	if l.n < len(l.ring) {
		l.ring[(l.head+l.n)%len(l.ring)] = ae
		l.n++
	} else {
		l.ring[l.head] = ae
		l.head = (l.head + 1) % len(l.ring)
	}
	ch := l.changed
	l.changed = make(chan struct{})
	l.mu.Unlock()
	close(ch)
}

// last returns the sequence number of the newest event.
func (l *eventLog) last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// since returns up to max events after seq after, oldest first, the
// sequence number to ask from next, how many events after after the ring no
// longer holds, and a channel closed when the next event arrives.
func (l *eventLog) since(after uint64, max int) (evs []*herdv1.AdminEvent, last, missed uint64, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if after > l.seq {
		after = l.seq // a client of an earlier primary: start from now
	}
	oldest := l.seq - uint64(l.n) + 1 // sequence number of ring[head]
	if l.n > 0 && after+1 < oldest {
		missed = oldest - after - 1
		after = oldest - 1
	}
	last = after
	for i := int(after + 1 - oldest); i < l.n && len(evs) < max; i++ {
		ev := l.ring[(l.head+i)%len(l.ring)]
		evs = append(evs, ev)
		last = ev.Seq
	}
	return evs, last, missed, l.changed
}
