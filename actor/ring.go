package actor

// minRingAlloc is the first allocation of a ring's buffer. Rings start small
// and double up to their bound, so a mailbox with a large capacity that never
// fills costs little memory; once a ring has grown, pushing and popping never
// allocate again.
const minRingAlloc = 16

// ring is a bounded FIFO queue on a circular slice. It is not safe for
// concurrent use; Mailbox guards its rings with a mutex.
type ring[T any] struct {
	buf   []T // len(buf) is the current allocation, at most limit
	head  int // index of the oldest element
	n     int // number of elements
	limit int // bound on n
}

func newRing[T any](limit int) ring[T] {
	return ring[T]{limit: limit}
}

func (r *ring[T]) len() int   { return r.n }
func (r *ring[T]) full() bool { return r.n >= r.limit }

// push appends v. The caller must have checked full.
func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		r.grow()
	}
	i := r.head + r.n
	if i >= len(r.buf) {
		i -= len(r.buf)
	}
	r.buf[i] = v
	r.n++
}

// pop removes and returns the oldest element. The caller must have checked
// len. The vacated slot is zeroed so the ring does not keep the message's
// referents alive.
func (r *ring[T]) pop() T {
	var zero T
	v := r.buf[r.head]
	r.buf[r.head] = zero
	r.head++
	if r.head == len(r.buf) {
		r.head = 0
	}
	r.n--
	return v
}

// grow doubles the allocation (at least minRingAlloc, at most limit) and
// unwraps the contents to the front of the new buffer.
func (r *ring[T]) grow() {
	size := max(2*len(r.buf), minRingAlloc)
	size = min(size, r.limit)
	buf := make([]T, size)
	k := copy(buf, r.buf[r.head:])
	copy(buf[k:], r.buf[:r.head])
	r.buf = buf
	r.head = 0
}
