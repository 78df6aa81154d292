package runtime

// Posting a read's user messages as one batch.
//
// The link's reader decodes every whole frame of one read in a row. A user
// message that finds its lane idle runs on the reader at once (inline.go);
// one that finds it busy (its drainer is handling earlier messages, or an
// inline handler was handed off) used to be posted on its own: a lock, and
// perhaps a wake-up of the drainer, per message, with the reader and the
// drainer taking turns at the mailbox's lock. Now it joins the reader's
// batch, and so does every later user message of the same read, in order
// (none may overtake it inline); the batch is posted with
// actor.Mailbox.PostBatch, one lock and at most one wake-up, when the
// read's frames are all dispatched (link.WithReadIdle), when it reaches
// maxBatch, or before the reader handles anything that is not a user
// message (a reply, a cancel, credit, a control request), so that such a
// frame still finds every user message read before it posted, as before
// (a graceful disconnect, for one, queues its remainder after them).
//
// Ordering per link and lane, backpressure and credit are the mailbox's,
// unchanged: the batch holds only credited messages, admitted as they were
// read, and the credit leaves room for every one of them in the lane
// (PostBatch blocks, as Post did, only if local events took the reserve).

// maxBatch bounds the reader's batch: past it the batch is posted at once,
// so that the drainer starts on a long read's messages early.
const maxBatch = 128

// flushBatch posts the reader's batch to the user lane. It runs on the
// link's reader (link.WithReadIdle, and onFrame).
func (ep *endpoint) flushBatch() {
	if len(ep.batch) == 0 {
		return
	}
	n, err := ep.box.PostBatch(ep.lifeCtx(), ep.batch)
	if err != nil {
		for i := n; i < len(ep.batch); i++ {
			in := &ep.batch[i]
			proc := ""
			if in.h != nil {
				proc = in.h.procedure
			} else if in.x != nil {
				proc = in.x.proc
			}
			ep.postFailed(in, proc, err)
		}
	}
	clear(ep.batch) // the mailbox has them; keep no request alive
	ep.batch = ep.batch[:0]
}
