package main

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/herd-go/herd/runtime"

	greetv1 "example.com/hello/gen/greet/v1"
	"example.com/hello/gen/greet/v1/greetv1herd"
)

// greeter serves GreetService in a worker. It calls the primary for a
// ticket before it answers.
type greeter struct {
	greetv1herd.UnimplementedGreetServiceHandler
	self    *runtime.Self
	tickets greetv1herd.TicketServiceClient
}

func (g *greeter) Greet(ctx context.Context, req *greetv1.GreetRequest) (*greetv1.GreetResponse, error) {
	t, err := g.tickets.Next(ctx, &greetv1.NextRequest{})
	if err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("hello %s from worker %d, ticket %d", req.GetName(), g.self.ID(), t.GetTicket())
	return &greetv1.GreetResponse{Greeting: msg}, nil
}

// counter serves TicketService in the primary, for every worker.
type counter struct {
	greetv1herd.UnimplementedTicketServiceHandler
	mu   sync.Mutex
	next uint64
}

func (c *counter) Next(ctx context.Context, req *greetv1.NextRequest) (*greetv1.NextResponse, error) {
	w, _ := runtime.WorkerFromContext(ctx) // who is asking
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	log.Printf("ticket %d for worker %d", c.next, w.ID())
	return &greetv1.NextResponse{Ticket: c.next}, nil
}

func main() {
	ctx := context.Background()
	if runtime.IsWorker() {
		self, err := runtime.NewSelf()
		if err != nil {
			log.Fatal(err)
		}
		g := &greeter{self: self, tickets: greetv1herd.NewTicketServiceClient(self)}
		if err := greetv1herd.RegisterGreetServiceHandler(self, g); err != nil {
			log.Fatal(err)
		}
		if err := self.Start(ctx); err != nil {
			log.Fatal(err)
		}
		<-self.Done() // until the primary disconnects us
		return
	}

	p := runtime.NewPrimary()
	if err := greetv1herd.RegisterTicketServiceHandler(p, &counter{}); err != nil {
		log.Fatal(err)
	}
	for _, name := range []string{"alice", "bob"} {
		w, err := p.Fork(ctx)
		if err != nil {
			log.Fatal(err)
		}
		res, err := greetv1herd.NewGreetServiceClient(w).Greet(ctx, &greetv1.GreetRequest{Name: name})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(res.GetGreeting())
	}
	p.Disconnect(ctx) // graceful: every worker exits
	p.Wait(ctx)
}
