package actor

import (
	"slices"
	"testing"
)

func TestRing(t *testing.T) {
	// Each step pushes (n > 0) or pops (n < 0) |n| elements; a model slice
	// gives the expected contents.
	tests := []struct {
		name  string
		limit int
		steps []int
	}{
		{"limit one", 1, []int{1, -1, 1, -1}},
		{"fill and drain", 3, []int{3, -3, 3, -3}},
		{"wrap around", 5, []int{4, -3, 4, -2, 2, -5}},
		{"grow while wrapped", 40, []int{10, -7, 30, -20, 17, -30}},
		{"grow exactly to limit", 16, []int{16, -16, 16, -8, 8, -16}},
		{"limit not a power of two", 17, []int{17, -5, 5, -17}},
		{"large limit grows lazily", 1000, []int{3, -3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing[int](tt.limit)
			var model []int
			next := 0
			for _, step := range tt.steps {
				for range step {
					if r.full() {
						t.Fatalf("full with %d of %d", r.len(), tt.limit)
					}
					r.push(next)
					model = append(model, next)
					next++
				}
				for range -step {
					got, want := r.pop(), model[0]
					model = model[1:]
					if got != want {
						t.Fatalf("pop = %d, want %d", got, want)
					}
				}
				if r.len() != len(model) {
					t.Fatalf("len = %d, want %d", r.len(), len(model))
				}
				if r.full() != (len(model) == tt.limit) {
					t.Fatalf("full = %v with %d of %d", r.full(), len(model), tt.limit)
				}
				if len(r.buf) > tt.limit {
					t.Fatalf("allocated %d slots, limit %d", len(r.buf), tt.limit)
				}
			}
		})
	}
}

func TestRingGrowsLazily(t *testing.T) {
	r := newRing[int](1 << 20)
	if r.buf != nil {
		t.Fatalf("new ring allocated %d slots", len(r.buf))
	}
	r.push(1)
	if len(r.buf) != minRingAlloc {
		t.Fatalf("after one push: %d slots, want %d", len(r.buf), minRingAlloc)
	}
}

func TestRingPopReleasesReferences(t *testing.T) {
	r := newRing[*int](4)
	for range 3 {
		v := new(int)
		r.push(v)
	}
	for range 3 {
		r.pop()
	}
	if i := slices.IndexFunc(r.buf, func(p *int) bool { return p != nil }); i >= 0 {
		t.Fatalf("slot %d still holds a popped pointer", i)
	}
}

func TestRingSteadyStateDoesNotAllocate(t *testing.T) {
	r := newRing[[4]int](64)
	for range 64 {
		r.push([4]int{})
	}
	for range 64 {
		r.pop()
	}
	allocs := testing.AllocsPerRun(100, func() {
		for range 50 {
			r.push([4]int{1, 2, 3, 4})
		}
		for range 50 {
			r.pop()
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs per run = %v, want 0", allocs)
	}
}
