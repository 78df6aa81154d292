package link

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// TestSendmsgFDRaw: sendmsgFD's raw sendmsg (the guard armed) delivers the
// bytes and the descriptor as unix.SendmsgN does. It fails if the message
// header it builds is wrong (bytes or the descriptor missing or cut).
func TestSendmsgFDRaw(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	rawReads.raw() // arms the guard if it was not
	if !rawReads.raw() {
		t.Fatal("the guard did not allow raw calls once armed")
	}
	payload := []byte("hand-off frame")
	n, err := sendmsgFD(fds[0], payload, unix.UnixRights(pipe[1]), 0)
	if err != nil || n != len(payload) {
		t.Fatalf("sendmsgFD: %d, %v; want %d", n, err, len(payload))
	}
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := unix.Recvmsg(fds[1], buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil || string(buf[:n]) != string(payload) {
		t.Fatalf("received %q, %v; want %q", buf[:n], err, payload)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %d, %v; want 1", len(msgs), err)
	}
	got, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(got) != 1 {
		t.Fatalf("rights %v, %v; want one descriptor", got, err)
	}
	defer unix.Close(got[0])
	// The received descriptor is the pipe's write end: what it writes
	// arrives at the read end.
	if _, err := unix.Write(got[0], []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Read(pipe[0], buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("read %q, %v through the received descriptor", buf[:n], err)
	}
}
