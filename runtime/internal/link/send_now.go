package link

import (
	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// SendNow queues a frame without descriptors that must never wait (a
// control frame such as a credit grant), as SendOwned does, but when
// nothing is queued and no write is under way it writes the frame itself,
// with non-blocking write(2) calls on the caller's goroutine, instead of
// waking the writer goroutine. A receiver that grants credit back every
// few thousand messages would otherwise wake a second thread for each
// grant: on a busy machine that costs more than the write. What the socket
// does not take at once is left to the writer, ahead of anything queued
// later, so frames keep their order and SendNow never waits for the peer
// to read. It ignores the write-queue limit, like SendOwned: the caller
// bounds how many such frames it sends. A credited frame is refused (it
// would have to wait for credit).
//
// A write error ends the link, as it would in the writer; SendNow then
// returns nil, as Send does for a frame the link ends under.
func (l *Link) SendNow(h *wire.Header, payload proto.Message) error {
	h, err := l.sendHeader(h, nil)
	if err != nil {
		return err
	}
	l.mu.Lock()
	_, wasEmpty, err := l.queueLocked(h, payload)
	if err != nil {
		return err
	}
	if wasEmpty && !l.writing && l.carry == nil {
		l.writeNow(nil, 0) // unlocks l.mu
		return nil
	}
	l.mu.Unlock()
	if wasEmpty {
		l.wakeWriter()
	}
	return nil
}
