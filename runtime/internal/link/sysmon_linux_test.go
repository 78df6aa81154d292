package link

import (
	"testing"
	"time"
)

// The raw-read guard: the first read after a quiet spell is a plain system
// call and arms the timer; reads are raw while it is pending; a firing
// with reads since re-arms it; a quiet firing stops raw reads but keeps
// the timer pending one more period; the next quiet firing lets it lapse.
// The firings are called by the test (the period is an hour).
func TestRawReadGuard(t *testing.T) {
	g := &rawReadGuard{period: time.Hour}
	pending := func() bool {
		// Stop reports whether the timer was pending; Reset puts it back.
		if g.t.Stop() {
			g.t.Reset(g.every())
			return true
		}
		return false
	}
	// expire is the timer running out: fire, with no timer pending.
	expire := func() {
		g.t.Stop()
		g.fire()
	}
	if g.raw() {
		t.Fatal("the first read was raw: nothing bounds sysmon's sleep yet")
	}
	if !pending() {
		t.Fatal("the first read did not arm the timer")
	}
	for i := range 3 {
		if !g.raw() {
			t.Fatalf("read %d after arming was not raw", i)
		}
	}
	expire() // reads since: stays armed
	if !g.raw() || !pending() {
		t.Fatal("a firing after reads stopped raw reads or the timer")
	}
	expire() // one read since the last firing: still armed
	expire() // quiet: raw reads stop, the timer stays for a racing read
	if !pending() {
		t.Fatal("a quiet firing left no timer pending for a read racing with it")
	}
	if g.armed.Load() {
		t.Fatal("raw reads still allowed after a quiet period")
	}
	expire() // the grace period: lapses
	if pending() {
		t.Fatal("the timer stayed pending with no reads")
	}
	if g.raw() {
		t.Fatal("the first read after the lapse was raw")
	}
	if !pending() || !g.raw() {
		t.Fatal("the read after the lapse did not arm the guard again")
	}
	g.t.Stop()
}
