package actor_test

import (
	"context"
	"fmt"

	"github.com/herd-go/herd/actor"
)

// event is a message type: posting it copies the struct into the mailbox's
// ring, with no allocation.
type event struct {
	kind   string
	worker int
}

func ExampleMailbox() {
	// SyncDispatcher handles each message before Post returns, which keeps
	// this example deterministic; a runtime uses the default dispatcher.
	m := actor.NewMailbox(func(e event) {
		fmt.Printf("%s from worker %d\n", e.kind, e.worker)
	}, actor.WithDispatcher(actor.SyncDispatcher{}), actor.WithCapacity(128))

	ctx := context.Background()
	_ = m.Post(ctx, event{"request", 1})
	_ = m.Post(ctx, event{"online", 2})
	m.Close()
	<-m.Done()
	fmt.Println(m.Post(ctx, event{"late", 1}))
	// Output:
	// request from worker 1
	// online from worker 2
	// actor: mailbox closed
}
