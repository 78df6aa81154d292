package runtime

import (
	"unsafe"

	"google.golang.org/protobuf/proto"
)

// Requests decoded from a link are allocated in blocks.
//
// The decoded request belongs to the user's handler, which may keep it
// (store it, send it on, hand it to a goroutine) for as long as it likes:
// the runtime never reuses or resets it. What the runtime saves is the
// allocation: instead of one heap object per message, a link's reader
// takes requests of one type from a block of up to arenaMaxMsgs of them,
// about arenaBlockBytes at most, allocated at once. A one-way flood of small
// messages then costs the primary a small fraction of an allocation per
// message, and the garbage collector a fraction of the objects.
//
// The price is retention: a block stays in memory while any of its
// requests is reachable, so a handler that keeps one small request of
// every block keeps the blocks (at most arenaBlockBytes each). A message
// larger than arenaBlockBytes/2 gets a block of its own, as before.
//
// Why not a pool of reused requests: reuse would be wrong for a handler
// that keeps its request, which the API has always allowed, and an
// opt-in "does not retain" promise the runtime cannot check turns a
// handler's mistake into silent data corruption. Blocks keep the
// ownership rule simple and still take the allocation off the hot path.

// Bounds of one block of requests.
const (
	arenaBlockBytes = 2048
	arenaMaxMsgs    = 32
)

// reqArena hands out new, zero request messages of one type. It is not
// safe for concurrent use: each link's reader has its own (endpoint.arena).
type reqArena interface {
	next() proto.Message
}

// typedArena is the reqArena of requests of type Req.
type typedArena[Req any] struct {
	// block is the current block; its requests from taken on are not
	// handed out yet. Moving on within a block writes an index, not a
	// slice: no pointer, so no write barrier per message while the
	// collector runs.
	block []Req
	taken int
	n     int // requests per block
}

func newTypedArena[Req any]() reqArena {
	var zero Req
	size := int(unsafe.Sizeof(zero))
	return &typedArena[Req]{n: max(1, min(arenaMaxMsgs, arenaBlockBytes/max(size, 1)))}
}

func (a *typedArena[Req]) next() proto.Message {
	if a.block == nil {
		a.block, a.taken = make([]Req, a.n), 0
	}
	m := &a.block[a.taken]
	if a.taken++; a.taken == len(a.block) {
		a.block = nil // do not keep a block whose requests are all handed out
	}
	return any(m).(proto.Message)
}
