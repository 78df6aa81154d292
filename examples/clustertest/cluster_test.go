package clustertest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// TestMain runs a role when a test started this binary in one (a worker
// forked by a test), and the tests otherwise.
func TestMain(m *testing.M) {
	herdtest.Main(m, herdtest.Roles{
		"greeter": greeter,
		"crash":   func() int { return 3 },
	})
}

// greeter is the worker under test: it listens on a port its primary
// shares, greets every connection, and serves until it is disconnected.
func greeter() int {
	ctx := context.Background()
	self, err := runtime.NewSelf()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := self.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello from worker %d\n", self.ID())
			c.Close()
		}
	}()
	<-self.Done()
	return 0
}

func TestGreeters(t *testing.T) {
	herdtest.CheckLeaks(t) // first, so that it runs after every other cleanup
	ctx := context.Background()
	p := runtime.NewPrimary(herdtest.WorkerRole("greeter"))
	events := herdtest.RecordEvents(t, p)
	t.Cleanup(func() {
		p.Disconnect(ctx)
		p.Wait(ctx)
	})

	for range 2 {
		if _, err := p.Fork(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Both workers listen on the same port ("listening 1 127.0.0.1:PORT").
	addr := strings.Fields(events.WaitFor("listening 1 "))[2]
	if got := events.WaitFor("listening 2 "); got != "listening 2 "+addr {
		t.Fatalf("worker 2: %q, want %s", got, addr)
	}
	// Connections go round-robin to both.
	var greetings []string
	for range 2 {
		greetings = append(greetings, dial(t, addr))
	}
	slices.Sort(greetings)
	if want := []string{"hello from worker 1\n", "hello from worker 2\n"}; !slices.Equal(greetings, want) {
		t.Errorf("greetings %q, want %q", greetings, want)
	}

	// A worker that fails is an exit event, not a test run inside it.
	if _, err := p.Fork(ctx, herdtest.ForkRole("crash")); err != nil {
		t.Fatal(err)
	}
	if got, want := events.WaitFor("exit 3 "), "exit 3 code=3 signal= after=false cause=EXIT_CAUSE_ERROR"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	if err := p.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"fork", "online", "listening " + addr, "disconnect", "exit code=0 signal= after=true cause=EXIT_CAUSE_CLEAN"}
	if got := events.Of(1); !slices.Equal(got, want) {
		t.Errorf("worker 1: %q\nwant %q", got, want)
	}
}

// dial connects to addr and returns what the server says.
func dial(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
