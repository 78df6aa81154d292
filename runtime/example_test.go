//go:build unix

package runtime_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"slices"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// The examples run in go test, and the workers they fork are this test
// binary: herdtest.WorkerRole picks what each plays (see exampleRoles, and
// TestMain). In a program of your own the workers run its main, which
// tells the two sides apart with runtime.IsWorker.

// exampleRoles are the workers of the examples.
var exampleRoles = herdtest.Roles{
	// worker comes online and waits to be disconnected.
	"worker": func() int { return workerMain("") },
	// echo serves herd.test.v1.TestService.
	"echo": typedWorkerMain,
	// greeter greets every connection to a port the cluster shares.
	"greeter": greeterWorker,
	// crash exits with status 3 once online.
	"crash": func() int { return workerMain("exit3") },
}

// Fork a worker, wait until it is online, disconnect it gracefully, and
// read its exit.
func ExampleWorker_Disconnect() {
	ctx := context.Background()
	p := runtime.NewPrimary(herdtest.WorkerRole("worker"))
	// A handler of this worker's events only, registered before it starts.
	online := make(chan struct{})
	w, err := p.Fork(ctx, runtime.WithRegister(func(r runtime.Registrar) error {
		return r.Register(runtime.NewEventHandler(herdv1herd.EventServiceOnlineProcedure,
			func(ctx context.Context, ev *herdv1.OnlineEvent) error {
				close(online)
				return nil
			}))
	}))
	if err != nil {
		log.Fatal(err)
	}
	<-online
	// Graceful: the worker runs its drain hooks and exits; Disconnect
	// returns once it has.
	if err := w.Disconnect(ctx); err != nil {
		log.Fatal(err)
	}
	exit, err := w.Wait(ctx) // its exit event, once handled
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("worker %d: code=%d exitedAfterDisconnect=%t cause=%v\n",
		w.ID(), exit.GetCode(), exit.GetExitedAfterDisconnect(), exit.GetCause())
	// Output:
	// worker 1: code=0 exitedAfterDisconnect=true cause=EXIT_CAUSE_CLEAN
}

// Fork two workers, each with an environment variable of its own, and wait
// until both are online; then disconnect them all and wait for their exits.
func ExamplePrimary_Fork() {
	ctx := context.Background()
	p := runtime.NewPrimary(herdtest.WorkerRole("worker"))
	online := make(chan uint64, 2)
	err := p.Register(runtime.NewEventHandler(herdv1herd.EventServiceOnlineProcedure,
		func(ctx context.Context, ev *herdv1.OnlineEvent) error {
			online <- ev.GetWorker().GetId()
			return nil
		}))
	if err != nil {
		log.Fatal(err)
	}
	for _, shard := range []string{"a", "b"} {
		w, err := p.Fork(ctx, runtime.WithForkEnv("SHARD="+shard))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("forked worker %d (shard %s)\n", w.ID(), shard)
	}
	ids := []uint64{<-online, <-online} // in either order
	slices.Sort(ids)
	fmt.Println("online:", ids)
	if err := p.Disconnect(ctx); err != nil { // every worker, gracefully
		log.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil { // every exit handled
		log.Fatal(err)
	}
	fmt.Println("workers left:", len(p.Workers()))
	// Output:
	// forked worker 1 (shard a)
	// forked worker 2 (shard b)
	// online: [1 2]
	// workers left: 0
}

// Call a worker's service through its generated client: the worker
// registered the handler (testv1herd.RegisterTestServiceHandler on its
// runtime.Self) before it started. TestService is herd's own test protocol
// (under runtime/internal); a program calls the generated client of its
// own service the same way.
func Example_typedCall() {
	ctx := context.Background()
	p := runtime.NewPrimary(herdtest.WorkerRole("echo"))
	w, err := p.Fork(ctx)
	if err != nil {
		log.Fatal(err)
	}
	client := testv1herd.NewTestServiceClient(w) // a Worker handle calls that worker
	res, err := client.Echo(ctx, &testv1.EchoRequest{Message: "hello"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.GetMessage())
	if err := p.Disconnect(ctx); err != nil {
		log.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// worker 1:hello
}

// Outside a cluster (here: the test process, a primary) Listen is
// net.Listen.
func ExampleListen() {
	ctx := context.Background()
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintln(c, "hello")
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	io.Copy(os.Stdout, c)
	// Output:
	// hello
}

// Two workers listen on one port: each calls Listen (greeterWorker below),
// the primary binds once, and connections go to the workers in turn.
func ExampleListen_workers() {
	ctx := context.Background()
	p := runtime.NewPrimary(herdtest.WorkerRole("greeter"))
	listening := make(chan string, 2)
	err := p.Register(runtime.NewEventHandler(herdv1herd.EventServiceListeningProcedure,
		func(ctx context.Context, ev *herdv1.ListeningEvent) error {
			a := ev.GetAddress()
			listening <- fmt.Sprintf("%s:%d", a.GetAddress(), a.GetPort())
			return nil
		}))
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		if _, err := p.Fork(ctx); err != nil {
			log.Fatal(err)
		}
	}
	addr := <-listening
	fmt.Println("same port:", addr == <-listening)
	var greetings []string
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		greetings = append(greetings, string(b))
	}
	slices.Sort(greetings)
	fmt.Print(greetings[0], greetings[1])
	if err := p.Disconnect(ctx); err != nil {
		log.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// same port: true
	// hello from worker 1
	// hello from worker 2
}

// greeterWorker is the worker of ExampleListen_workers.
func greeterWorker() int {
	ctx := context.Background()
	self, err := runtime.NewSelf()
	if err != nil {
		log.Fatal(err)
	}
	if err := self.Start(ctx); err != nil {
		log.Fatal(err)
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0") // from the primary
	if err != nil {
		log.Fatal(err)
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

// events prints the cluster events it is given; it embeds the
// Unimplemented handler by value, so it needs only the methods it wants.
type events struct {
	herdv1herd.UnimplementedEventServiceHandler
}

func (events) Online(ctx context.Context, ev *herdv1.OnlineEvent) error {
	fmt.Println("online", ev.GetWorker().GetId())
	return nil
}

func (events) Exit(ctx context.Context, ev *herdv1.ExitEvent) error {
	fmt.Printf("exit %d code=%d cause=%v\n", ev.GetWorker().GetId(), ev.GetCode(), ev.GetCause())
	return nil
}

// Cluster events are typed messages, handled in each worker's order: here a
// worker that exits with status 3 once it is online.
func Example_events() {
	ctx := context.Background()
	p := runtime.NewPrimary(herdtest.WorkerRole("crash"))
	if err := herdv1herd.RegisterEventServiceHandler(p, events{}); err != nil {
		log.Fatal(err)
	}
	if _, err := p.Fork(ctx); err != nil {
		log.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil { // every exit event handled
		log.Fatal(err)
	}
	// Output:
	// online 1
	// exit 1 code=3 cause=EXIT_CAUSE_ERROR
}
