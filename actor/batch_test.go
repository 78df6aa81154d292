package actor

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestPostBatchOneSchedule: a batch posted to an idle mailbox is queued
// under one lock and schedules one turn, which handles all of it in order,
// where the same messages posted one by one schedule a turn each.
func TestPostBatchOneSchedule(t *testing.T) {
	var rec recorder[int]
	d := &queueDispatcher{}
	m := NewMailbox(rec.handle, WithDispatcher(d), WithThroughput(1000))
	batch := []int{1, 2, 3, 4, 5, 6, 7, 8}
	n, err := m.PostBatch(context.Background(), batch)
	if n != len(batch) || err != nil {
		t.Fatalf("PostBatch = %d, %v", n, err)
	}
	if c := d.count(); c != 1 {
		t.Fatalf("%d turns scheduled for one batch, want 1", c)
	}
	if l := m.Len(); l != len(batch) {
		t.Fatalf("Len = %d after the batch, want %d", l, len(batch))
	}
	d.runAll()
	if got := rec.messages(); !slices.Equal(got, batch) {
		t.Fatalf("handled %v, want %v", got, batch)
	}
	// Posted after the batch, with a turn of its own: after it.
	if err := m.Post(context.Background(), 9); err != nil {
		t.Fatal(err)
	}
	d.runAll()
	if got := rec.messages(); !slices.Equal(got, append(batch, 9)) {
		t.Fatalf("handled %v", got)
	}
	if n, err := m.PostBatch(context.Background(), nil); n != 0 || err != nil || d.count() != 2 {
		t.Fatalf("empty PostBatch = %d, %v, %d turns scheduled", n, err, d.count())
	}
}

// TestPostBatchBackpressure: a batch larger than the room left fills the
// queue, waits like Post for the drainer to free slots, and then posts the
// rest in order; messages handled while it waits are the batch's first.
func TestPostBatchBackpressure(t *testing.T) {
	var rec recorder[int]
	d := make(chanDispatcher, 1) // at most one turn is scheduled at a time
	m := NewMailbox(rec.handle, WithCapacity(3), WithDispatcher(d), WithThroughput(1))
	waiting := make(chan struct{}, 1)
	m.hookWait = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	batch := []int{1, 2, 3, 4, 5, 6, 7}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := m.PostBatch(context.Background(), batch)
		done <- result{n, err}
	}()
	recv(t, waiting, "PostBatch to wait for room")
	if l := m.Len(); l != 3 {
		t.Fatalf("Len = %d while the batch waits, want the capacity 3", l)
	}
	// Each turn handles one message (throughput 1), which frees a slot.
	posted := false
	for !posted || len(rec.messages()) < len(batch) {
		select {
		case r := <-done:
			if r.n != len(batch) || r.err != nil {
				t.Fatalf("PostBatch = %d, %v", r.n, r.err)
			}
			posted = true
		case turn := <-d:
			turn()
		case <-time.After(waitTimeout):
			t.Fatalf("stuck: posted %v, handled %v", posted, rec.messages())
		}
	}
	if got := rec.messages(); !slices.Equal(got, batch) {
		t.Fatalf("handled %v, want %v", got, batch)
	}
}

// TestPostBatchContextEnds: a batch waiting for room returns how much of
// it was posted and an error matching ErrMailboxFull and the context's;
// the caller keeps the rest.
func TestPostBatchContextEnds(t *testing.T) {
	var rec recorder[int]
	d := &queueDispatcher{}
	m := NewMailbox(rec.handle, WithCapacity(2), WithDispatcher(d))
	waiting := make(chan struct{}, 1)
	m.hookWait = func() { waiting <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := m.PostBatch(ctx, []int{1, 2, 3, 4})
		done <- result{n, err}
	}()
	recv(t, waiting, "PostBatch to wait for room")
	cancel()
	r := recv(t, done, "PostBatch to return")
	if r.n != 2 || !errors.Is(r.err, ErrMailboxFull) || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("PostBatch = %d, %v; want 2 and an error matching ErrMailboxFull and context.Canceled", r.n, r.err)
	}
	d.runAll()
	if got := rec.messages(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("handled %v", got)
	}
	if w := m.waitersForTest(); w != 0 {
		t.Fatalf("%d waiters left", w)
	}
}

// TestPostBatchClosed: Close releases a waiting batch with
// ErrMailboxClosed and what was posted before is still handled; a batch
// after Close posts nothing.
func TestPostBatchClosed(t *testing.T) {
	var rec recorder[int]
	d := &queueDispatcher{}
	m := NewMailbox(rec.handle, WithCapacity(1), WithDispatcher(d))
	waiting := make(chan struct{}, 1)
	m.hookWait = func() { waiting <- struct{}{} }
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := m.PostBatch(context.Background(), []int{1, 2, 3})
		done <- result{n, err}
	}()
	recv(t, waiting, "PostBatch to wait for room")
	m.Close()
	if r := recv(t, done, "PostBatch to return"); r.n != 1 || !errors.Is(r.err, ErrMailboxClosed) {
		t.Fatalf("PostBatch = %d, %v; want 1, ErrMailboxClosed", r.n, r.err)
	}
	if n, err := m.PostBatch(context.Background(), []int{4}); n != 0 || !errors.Is(err, ErrMailboxClosed) {
		t.Fatalf("PostBatch after Close = %d, %v", n, err)
	}
	d.runAll()
	recv(t, m.Done(), "Done")
	if got := rec.messages(); !slices.Equal(got, []int{1}) {
		t.Fatalf("handled %v", got)
	}
}

// TestPostBatchRacesTryHandle: batches and TryHandle calls from one
// goroutine (a reader: inline when the lane is idle, a batch otherwise) and
// posts from another keep each source's order, and the handler never
// overlaps itself, with the dedicated drainer.
func TestPostBatchRacesTryHandle(t *testing.T) {
	const n = 20000
	type msg struct {
		src, seq int
	}
	var running, overlaps int32
	last := [2]int{-1, -1}
	var bad []msg
	m := NewMailbox(func(v msg) {
		if running++; running != 1 {
			overlaps++
		}
		if v.seq != last[v.src]+1 {
			bad = append(bad, v)
		}
		last[v.src] = v.seq
		running--
	}, WithCapacity(64))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if err := m.Post(context.Background(), msg{1, i}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var batch []msg
	for i := 0; i < n; i++ {
		v := msg{0, i}
		if len(batch) == 0 && m.TryHandle(v, nil) {
			continue
		}
		batch = append(batch, v)
		if len(batch) == 7 || i == n-1 {
			if k, err := m.PostBatch(context.Background(), batch); k != len(batch) || err != nil {
				t.Fatalf("PostBatch = %d, %v", k, err)
			}
			batch = batch[:0]
		}
	}
	<-done
	m.Close()
	recv(t, m.Done(), "Done")
	if overlaps != 0 || len(bad) != 0 || last != [2]int{n - 1, n - 1} {
		t.Fatalf("%d overlaps, out of order %v, last %v", overlaps, bad[:min(len(bad), 5)], last)
	}
}
