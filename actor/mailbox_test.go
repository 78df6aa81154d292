package actor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOrderWithConcurrentDrainer(t *testing.T) {
	const n = 20000
	var user []int
	m := NewMailbox(func(v int) {
		user = append(user, v)
	}, WithCapacity(16), WithThroughput(5))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= n; i++ {
			if err := m.Post(context.Background(), i); err != nil {
				t.Errorf("Post: %v", err)
				return
			}
		}
	})
	wg.Wait()
	m.Close()
	recv(t, m.Done(), "Done")
	if len(user) != n {
		t.Fatalf("handled %d, want %d", len(user), n)
	}
	for i, v := range user {
		if v != i+1 {
			t.Fatalf("position %d holds %d", i, v)
		}
	}
}

func TestCapacity(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		want int
	}{
		{"defaults", nil, DefaultCapacity},
		{"one", []Option{WithCapacity(1)}, 1},
		{"small", []Option{WithCapacity(3)}, 3},
		{"above first allocation", []Option{WithCapacity(minRingAlloc*3 + 1)}, minRingAlloc*3 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder[int]
			d := &queueDispatcher{}
			m := NewMailbox(rec.handle, append(tt.opts, WithDispatcher(d))...)
			if c := m.Cap(); c != tt.want {
				t.Fatalf("Cap = %d; want %d", c, tt.want)
			}
			for i := range tt.want {
				if err := m.TryPost(i); err != nil {
					t.Fatalf("TryPost %d: %v", i, err)
				}
			}
			if err := m.TryPost(-1); !errors.Is(err, ErrMailboxFull) {
				t.Fatalf("TryPost on full lane = %v, want ErrMailboxFull", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := m.Post(ctx, -1); !errors.Is(err, ErrMailboxFull) || !errors.Is(err, context.Canceled) {
				t.Fatalf("Post with done context on full lane = %v", err)
			}
			if n := m.Len(); n != tt.want {
				t.Fatalf("Len = %d; want %d", n, tt.want)
			}
			d.runAll()
			if got := rec.len(); got != tt.want {
				t.Fatalf("handled %d, want %d", got, tt.want)
			}
			if n := m.Len(); n != 0 {
				t.Fatalf("Len after drain = %d", n)
			}
			if err := m.TryPost(0); err != nil {
				t.Fatalf("TryPost after drain: %v", err)
			}
		})
	}
}

func TestInvalidConstruction(t *testing.T) {
	tests := []struct {
		name    string
		handle  func(int)
		opts    []Option
		wantMsg string
	}{
		{"nil handler", nil, nil, "nil handler"},
		{"zero capacity", func(int) {}, []Option{WithCapacity(0)}, "WithCapacity(0)"},
		{"zero throughput", func(int) {}, []Option{WithThroughput(0)}, "WithThroughput(0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tt.wantMsg) {
					t.Fatalf("panic %v, want one mentioning %q", r, tt.wantMsg)
				}
			}()
			NewMailbox(tt.handle, tt.opts...)
		})
	}
}

func TestNilOptionsMeanDefaults(t *testing.T) {
	var rec recorder[int]
	m := NewMailbox(rec.handle, nil, WithDispatcher(nil), WithPanicHandler(nil))
	if m.cfg.dispatcher != nil || m.wake == nil {
		t.Fatalf("dispatcher = %T, want the dedicated drainer", m.cfg.dispatcher)
	}
	if m.cfg.onPanic == nil {
		t.Fatal("nil panic handler")
	}
	if err := m.Post(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	m.Close()
	recv(t, m.Done(), "Done")
	if rec.len() != 1 {
		t.Fatalf("handled %d, want 1", rec.len())
	}
}

func TestPostBlocksUntilSpace(t *testing.T) {
	var rec recorder[int]
	d := &queueDispatcher{}
	m := NewMailbox(rec.handle, WithCapacity(1), WithDispatcher(d))
	waiting := make(chan struct{}, 1)
	m.hookWait = func() { waiting <- struct{}{} }

	if err := m.TryPost(1); err != nil {
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() { result <- m.Post(context.Background(), 2) }()
	recv(t, waiting, "Post to block")
	select {
	case err := <-result:
		t.Fatalf("Post returned %v while the lane was full", err)
	default:
	}
	if n := m.Len(); n != 1 {
		t.Fatalf("Len = %d while blocked", n)
	}

	d.runOne() // handles 1, which frees the slot
	if err := recv(t, result, "Post to return"); err != nil {
		t.Fatalf("Post = %v", err)
	}
	d.runAll()
	if got := rec.messages(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("handled %v", got)
	}
	if w := m.waitersForTest(); w != 0 {
		t.Fatalf("%d waiters left", w)
	}
}

func TestBlockedPostersAllWake(t *testing.T) {
	// The lane is full and as many posters are registered as waiters as it
	// has slots, but none is parked on the wake-up channel yet (the hook holds
	// them). The drainer then frees every slot, so all wake-ups but one find
	// the single-slot token channel full. Its handler then lets the posters
	// park and waits for all of them to get in: that only works because each
	// woken poster passes the token on while room remains, since no further
	// pop happens until they have all returned.
	const capacity = 16
	results := make(chan error, capacity)
	gate := make(chan struct{})
	returned := 0
	var handled []int
	d := &queueDispatcher{}
	m := NewMailbox(func(v int) {
		handled = append(handled, v)
		if v != capacity-1 {
			return
		}
		close(gate)
		for ; returned < capacity; returned++ {
			select {
			case err := <-results:
				if err != nil {
					t.Errorf("Post = %v", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("%d posters still blocked with the lane empty", capacity-returned)
				return
			}
		}
	}, WithCapacity(capacity), WithDispatcher(d))
	waiting := make(chan struct{}, capacity)
	m.hookWait = func() {
		select {
		case waiting <- struct{}{}:
		default: // a woken poster that lost its slot and waits again
		}
		<-gate
	}
	for i := range capacity {
		if err := m.TryPost(i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range capacity {
		go func() { results <- m.Post(context.Background(), capacity+i) }()
	}
	for range capacity {
		recv(t, waiting, "posters to block")
	}
	d.runAll()
	if returned != capacity {
		t.Fatalf("%d of %d blocked posters got in", returned, capacity)
	}
	if len(handled) != 2*capacity {
		t.Fatalf("handled %d, want %d", len(handled), 2*capacity)
	}
}

// manualDeadline is a context with a deadline that passes when pass is
// called, whatever the clock says.
type manualDeadline struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newManualDeadline() *manualDeadline {
	return &manualDeadline{Context: context.Background(), done: make(chan struct{})}
}

func (c *manualDeadline) pass() { c.once.Do(func() { close(c.done) }) }

func (c *manualDeadline) Deadline() (time.Time, bool) { return time.Now().Add(time.Hour), true }

func (c *manualDeadline) Done() <-chan struct{} { return c.done }

func (c *manualDeadline) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func TestPostContextEndsWhileFull(t *testing.T) {
	errCause := errors.New("link torn down")
	tests := []struct {
		name      string
		ctx       func() (context.Context, func())
		wantWait  bool // Post gets as far as blocking
		wantMatch []error
	}{
		{
			name: "cancelled while waiting",
			ctx: func() (context.Context, func()) {
				ctx, cancel := context.WithCancel(context.Background())
				return ctx, cancel
			},
			wantWait:  true,
			wantMatch: []error{ErrMailboxFull, context.Canceled},
		},
		{
			name: "cancelled with cause while waiting",
			ctx: func() (context.Context, func()) {
				ctx, cancel := context.WithCancelCause(context.Background())
				return ctx, func() { cancel(errCause) }
			},
			wantWait:  true,
			wantMatch: []error{ErrMailboxFull, context.Canceled, errCause},
		},
		{
			name: "deadline passes while waiting",
			ctx: func() (context.Context, func()) {
				// A deadline that passes when the test says so: a real
				// short timeout can pass before Post starts waiting on a
				// loaded machine.
				ctx := newManualDeadline()
				return ctx, ctx.pass
			},
			wantWait:  true,
			wantMatch: []error{ErrMailboxFull, context.DeadlineExceeded},
		},
		{
			name: "deadline already passed",
			ctx: func() (context.Context, func()) {
				return context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			},
			wantWait:  false,
			wantMatch: []error{ErrMailboxFull, context.DeadlineExceeded},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder[int]
			d := &queueDispatcher{}
			m := NewMailbox(rec.handle, WithCapacity(1), WithDispatcher(d))
			waiting := make(chan struct{}, 1)
			m.hookWait = func() { waiting <- struct{}{} }
			if err := m.TryPost(1); err != nil {
				t.Fatal(err)
			}
			ctx, end := tt.ctx()
			result := make(chan error, 1)
			go func() { result <- m.Post(ctx, 2) }()
			if tt.wantWait {
				recv(t, waiting, "Post to block")
				end()
			}
			err := recv(t, result, "Post to return")
			for _, target := range tt.wantMatch {
				if !errors.Is(err, target) {
					t.Errorf("Post = %v; does not match %v", err, target)
				}
			}
			if errors.Is(err, ErrMailboxClosed) {
				t.Errorf("Post = %v; matches ErrMailboxClosed", err)
			}
			if !tt.wantWait {
				end()
				select {
				case <-waiting:
					t.Error("Post blocked although its context was done")
				default:
				}
			}
			if w := m.waitersForTest(); w != 0 {
				t.Fatalf("%d waiters left", w)
			}
			d.runAll()
			if got := rec.messages(); !slices.Equal(got, []int{1}) {
				t.Fatalf("handled %v, want [1]", got)
			}
		})
	}
}

func TestPostWithDoneContextSucceedsWhenThereIsRoom(t *testing.T) {
	var rec recorder[int]
	m := NewMailbox(rec.handle, WithDispatcher(SyncDispatcher{}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Post(ctx, 1); err != nil {
		t.Fatalf("Post = %v", err)
	}
	if rec.len() != 1 {
		t.Fatal("message not handled")
	}
}

func TestClose(t *testing.T) {
	t.Run("queued messages are handled before Done", func(t *testing.T) {
		var rec recorder[string]
		d := &queueDispatcher{}
		m := NewMailbox(rec.handle, WithDispatcher(d))
		for _, s := range []string{"U1", "U2"} {
			if err := m.Post(context.Background(), s); err != nil {
				t.Fatal(err)
			}
		}
		m.Close()
		if isClosed(m.Done()) {
			t.Fatal("Done closed with messages queued")
		}
		for name, err := range map[string]error{
			"Post":    m.Post(context.Background(), "late"),
			"TryPost": m.TryPost("late"),
		} {
			if !errors.Is(err, ErrMailboxClosed) {
				t.Errorf("%s after Close = %v, want ErrMailboxClosed", name, err)
			}
		}
		d.runAll()
		if !isClosed(m.Done()) {
			t.Fatal("Done not closed after the queue drained")
		}
		if got, want := rec.messages(), []string{"U1", "U2"}; !slices.Equal(got, want) {
			t.Fatalf("handled %v, want %v", got, want)
		}
	})

	t.Run("idle and empty", func(t *testing.T) {
		m := NewMailbox(func(int) {}, WithDispatcher(SyncDispatcher{}))
		m.Close()
		if !isClosed(m.Done()) {
			t.Fatal("Done not closed")
		}
		m.Close() // idempotent
		if err := m.TryPost(1); !errors.Is(err, ErrMailboxClosed) {
			t.Fatalf("TryPost = %v", err)
		}
	})

	t.Run("Done waits for the message being handled", func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		m := NewMailbox(func(int) {
			close(entered)
			<-release
		})
		if err := m.TryPost(1); err != nil {
			t.Fatal(err)
		}
		recv(t, entered, "handler")
		m.Close()
		if isClosed(m.Done()) {
			t.Fatal("Done closed while the handler was running")
		}
		close(release)
		recv(t, m.Done(), "Done")
	})

	t.Run("blocked posters are released", func(t *testing.T) {
		const posters = 3
		var rec recorder[int]
		d := &queueDispatcher{}
		m := NewMailbox(rec.handle, WithCapacity(1), WithDispatcher(d))
		waiting := make(chan struct{}, posters)
		m.hookWait = func() { waiting <- struct{}{} }
		if err := m.TryPost(0); err != nil {
			t.Fatal(err)
		}
		results := make(chan error, posters)
		for i := range posters {
			go func() { results <- m.Post(context.Background(), i+1) }()
		}
		for range posters {
			recv(t, waiting, "posters to block")
		}
		m.Close()
		for range posters {
			if err := recv(t, results, "a released Post"); !errors.Is(err, ErrMailboxClosed) {
				t.Errorf("blocked Post = %v, want ErrMailboxClosed", err)
			}
		}
		d.runAll()
		if got := rec.messages(); !slices.Equal(got, []int{0}) {
			t.Fatalf("handled %v, want [0]", got)
		}
		if !isClosed(m.Done()) {
			t.Fatal("Done not closed")
		}
	})

	t.Run("from the handler", func(t *testing.T) {
		var got []int
		var m *Mailbox[int]
		m = NewMailbox(func(v int) {
			got = append(got, v)
			if v == 1 {
				if err := m.TryPost(2); err != nil {
					t.Errorf("TryPost: %v", err)
				}
				m.Close()
			}
		}, WithDispatcher(SyncDispatcher{}))
		if err := m.Post(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []int{1, 2}) {
			t.Fatalf("handled %v, want [1 2]", got)
		}
		if !isClosed(m.Done()) {
			t.Fatal("Done not closed")
		}
	})

	t.Run("races with a busy drainer", func(t *testing.T) {
		for range 200 {
			var handled atomic.Int32
			m := NewMailbox(func(int) { handled.Add(1) }, WithThroughput(3))
			for i := range 20 {
				if err := m.TryPost(i); err != nil {
					t.Fatal(err)
				}
			}
			m.Close()
			recv(t, m.Done(), "Done")
			if n := handled.Load(); n != 20 {
				t.Fatalf("handled %d of 20 before Done", n)
			}
		}
	})
}

func TestThroughputBudget(t *testing.T) {
	tests := []struct {
		messages, throughput, wantTurns int
	}{
		{200, 64, 4},
		{128, 64, 2},
		{64, 64, 1},
		{65, 64, 2},
		{10, 1, 10},
		{1, 1, 1},
		{7, 100, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d messages throughput %d", tt.messages, tt.throughput), func(t *testing.T) {
			var rec recorder[int]
			d := &queueDispatcher{}
			m := NewMailbox(rec.handle, WithDispatcher(d), WithThroughput(tt.throughput))
			for i := range tt.messages {
				if err := m.TryPost(i); err != nil {
					t.Fatal(err)
				}
			}
			if n := d.count(); n != 1 {
				t.Fatalf("%d turns scheduled by posting, want 1", n)
			}
			for d.runOne() {
				if got := rec.len(); got > d.count()*tt.throughput {
					t.Fatalf("%d messages handled in %d turns of at most %d", got, d.count(), tt.throughput)
				}
			}
			if got := d.count(); got != tt.wantTurns {
				t.Fatalf("scheduled %d turns, want %d", got, tt.wantTurns)
			}
			if got := rec.len(); got != tt.messages {
				t.Fatalf("handled %d, want %d", got, tt.messages)
			}
		})
	}
}

func TestConcurrentPosters(t *testing.T) {
	const producers, perProducer = 16, 2000
	type msg struct{ producer, seq int }
	var (
		inside       atomic.Int32
		overlaps     atomic.Int32
		lastUser     [producers]int // plain state: only the drainer touches it
		handled      int
		outOfOrder   int
		userAccepted atomic.Int64
	)
	for i := range producers {
		lastUser[i] = -1
	}
	m := NewMailbox(func(v msg) {
		if inside.Add(1) != 1 {
			overlaps.Add(1)
		}
		defer inside.Add(-1)
		last := &lastUser[v.producer]
		if v.seq <= *last {
			outOfOrder++
		}
		*last = v.seq
		handled++
		runtime.Gosched() // widen the window for a second drainer
	}, WithCapacity(8), WithThroughput(7))

	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for seq := 1; seq <= perProducer; seq++ {
				if err := m.Post(context.Background(), msg{p, seq}); err != nil {
					t.Errorf("Post: %v", err)
					return
				}
				userAccepted.Add(1)
			}
		})
	}
	wg.Wait()
	m.Close()
	recv(t, m.Done(), "Done")
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("handler entered concurrently %d times", n)
	}
	if outOfOrder != 0 {
		t.Fatalf("%d messages out of order", outOfOrder)
	}
	if want := int(userAccepted.Load()); handled != want {
		t.Fatalf("handled %d, accepted %d", handled, want)
	}
	if userAccepted.Load() != producers*perProducer {
		t.Fatalf("accepted %d user messages", userAccepted.Load())
	}
}

func TestPanicRecovery(t *testing.T) {
	tests := []struct {
		name  string
		value any
		check func(t *testing.T, recovered any)
	}{
		{"string", "boom", func(t *testing.T, r any) {
			if r != "boom" {
				t.Fatalf("recovered %v", r)
			}
		}},
		{"error", errCustom, func(t *testing.T, r any) {
			if err, _ := r.(error); !errors.Is(err, errCustom) {
				t.Fatalf("recovered %v", r)
			}
		}},
		{"nil", nil, func(t *testing.T, r any) {
			var pe *runtime.PanicNilError
			if err, _ := r.(error); !errors.As(err, &pe) {
				t.Fatalf("recovered %T %v", r, r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			var reports []any
			var stack []byte
			m := NewMailbox(func(v int) {
				if v == 2 {
					panicking(tt.value)
				}
				got = append(got, v)
			}, WithDispatcher(SyncDispatcher{}), WithPanicHandler(func(r any, s []byte) {
				reports = append(reports, r)
				stack = s
			}))
			for v := range 4 {
				if err := m.Post(context.Background(), v); err != nil {
					t.Fatalf("Post %d: %v", v, err)
				}
			}
			if !slices.Equal(got, []int{0, 1, 3}) {
				t.Fatalf("handled %v, want [0 1 3]", got)
			}
			if len(reports) != 1 {
				t.Fatalf("%d panic reports, want 1", len(reports))
			}
			tt.check(t, reports[0])
			if !bytes.Contains(stack, []byte("actor.panicking")) {
				t.Fatalf("stack does not show the panicking function:\n%s", stack)
			}
		})
	}
}

var errCustom = errors.New("custom")

//go:noinline
func panicking(v any) { panic(v) }

func TestDefaultPanicHandlerLogs(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	var handled []int
	m := NewMailbox(func(v int) {
		if v == 1 {
			panicking("kaboom")
		}
		handled = append(handled, v)
	}, WithDispatcher(SyncDispatcher{}))
	for v := range 3 {
		if err := m.Post(context.Background(), v); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(handled, []int{0, 2}) {
		t.Fatalf("handled %v", handled)
	}
	var rec struct {
		Level, Msg, Panic, Stack string
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("log %q: %v", buf.String(), err)
	}
	if rec.Level != "ERROR" || rec.Panic != "kaboom" || !strings.Contains(rec.Stack, "actor.panicking") {
		t.Fatalf("log record %+v", rec)
	}
}

func TestCrashOnPanic(t *testing.T) {
	type crash struct {
		value any
		stack string
	}
	crashes := make(chan crash, 1)
	recovering := DispatcherFunc(func(turn func()) {
		defer func() {
			if r := recover(); r != nil {
				crashes <- crash{r, stackString()}
			}
		}()
		turn()
	})
	var got []int
	m := NewMailbox(func(v int) {
		if v == 1 {
			panicking("let it crash")
		}
		got = append(got, v)
	}, WithDispatcher(recovering), WithCrashOnPanic(), WithPanicHandler(func(r any, _ []byte) {
		t.Errorf("panic handler called with %v", r)
	}))
	if err := m.Post(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Post(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	c := recv(t, crashes, "the crash")
	if c.value != "let it crash" {
		t.Fatalf("re-panicked with %v", c.value)
	}
	// Not recovered by the mailbox: the stack still shows the handler.
	if !strings.Contains(c.stack, "actor.panicking") {
		t.Fatalf("stack lost the panicking frame:\n%s", c.stack)
	}
	if !slices.Equal(got, []int{0}) {
		t.Fatalf("handled %v", got)
	}
}

func stackString() string {
	buf := make([]byte, 64<<10)
	return string(buf[:runtime.Stack(buf, false)])
}

func TestSyncDispatcher(t *testing.T) {
	var got []string
	var m *Mailbox[string]
	m = NewMailbox(func(s string) {
		got = append(got, s)
		switch s {
		case "fan-out":
			// Posts from the handler are handled after it returns, in the
			// same outer Post, and across several turns of 2.
			for i := range 5 {
				if err := m.TryPost(fmt.Sprint("child", i)); err != nil {
					t.Errorf("TryPost: %v", err)
				}
			}
		}
	}, WithDispatcher(SyncDispatcher{}), WithThroughput(2))

	steps := []struct {
		post string
		want []string
	}{
		{"a", []string{"a"}},
		{"b", []string{"a", "b"}},
		{"fan-out", []string{"a", "b", "fan-out", "child0", "child1", "child2", "child3", "child4"}},
		{"c", []string{"a", "b", "fan-out", "child0", "child1", "child2", "child3", "child4", "c"}},
	}
	for _, st := range steps {
		if err := m.Post(context.Background(), st.post); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, st.want) {
			t.Fatalf("after Post(%q): handled %v, want %v", st.post, got, st.want)
		}
		if n := m.Len(); n != 0 {
			t.Fatalf("after Post(%q): Len = %d", st.post, n)
		}
	}
}

// TestRecheckAfterIdle posts a message in the exact window between the
// drainer finding the queue empty and going idle. The post sees the drainer
// running, so it schedules nothing; only the drainer's re-check can find it.
func TestRecheckAfterIdle(t *testing.T) {
	var rec recorder[int]
	m := NewMailbox(rec.handle, WithDispatcher(SyncDispatcher{}))
	var once sync.Once
	m.hookBeforeIdle = func() {
		once.Do(func() {
			errc := make(chan error)
			go func() { errc <- m.Post(context.Background(), 2) }()
			if err := <-errc; err != nil {
				t.Errorf("Post in window: %v", err)
			}
		})
	}
	if err := m.Post(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if got := rec.messages(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("handled %v, want [1 2]: message posted while going idle was stranded", got)
	}
}

// TestCloseWhileGoingIdle calls Close in the window between the drainer
// finding the queue empty and going idle: Close sees the drainer running and
// schedules nothing, so only the drainer's re-check can close Done.
func TestCloseWhileGoingIdle(t *testing.T) {
	var rec recorder[int]
	m := NewMailbox(rec.handle, WithDispatcher(SyncDispatcher{}))
	var once sync.Once
	m.hookBeforeIdle = func() {
		once.Do(func() {
			closed := make(chan struct{})
			go func() { m.Close(); close(closed) }()
			<-closed
		})
	}
	if err := m.Post(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if !isClosed(m.Done()) {
		t.Fatal("Done not closed after a Close that raced the drainer going idle")
	}
}

func TestRecheckAfterIdleStress(t *testing.T) {
	rounds := 3000
	if testing.Short() {
		rounds = 300
	}
	for _, widen := range []bool{false, true} {
		t.Run(fmt.Sprintf("widen=%v", widen), func(t *testing.T) {
			handled := make(chan int, 2)
			var inside atomic.Int32
			m := NewMailbox(func(v int) {
				if inside.Add(1) != 1 {
					t.Error("concurrent handle")
				}
				inside.Add(-1)
				handled <- v
			})
			if widen {
				m.hookBeforeIdle = runtime.Gosched
			}
			for round := range rounds {
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range 2 {
					wg.Go(func() {
						<-start
						if err := m.TryPost(2*round + i); err != nil {
							t.Errorf("TryPost: %v", err)
						}
					})
				}
				close(start)
				for range 2 {
					select {
					case <-handled:
					case <-time.After(waitTimeout):
						t.Fatalf("round %d: a message was stranded", round)
					}
				}
				wg.Wait()
			}
			m.Close()
			recv(t, m.Done(), "Done")
		})
	}
}

// slotDispatcher keeps the one turn a mailbox can have scheduled, without
// allocating, so AllocsPerRun measures only the mailbox.
type slotDispatcher struct{ turn func() }

func (d *slotDispatcher) Schedule(turn func()) { d.turn = turn }

func (d *slotDispatcher) run() {
	for d.turn != nil {
		turn := d.turn
		d.turn = nil
		turn()
	}
}

type benchMsg struct {
	id      uint64
	payload [4]int64
	name    string
	ptr     *int
}

func TestPostAndHandleDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	var sum uint64
	handle := func(m benchMsg) { sum += m.id }
	ctx := context.Background()
	x := 7
	msg := benchMsg{id: 1, name: "hello", ptr: &x}

	t.Run("SyncDispatcher Post", func(t *testing.T) {
		m := NewMailbox(handle, WithDispatcher(SyncDispatcher{}))
		_ = m.Post(ctx, msg) // warm up: first ring allocation
		allocs := testing.AllocsPerRun(1000, func() {
			if err := m.Post(ctx, msg); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("allocs per Post+handle = %v, want 0", allocs)
		}
	})

	t.Run("running mailbox batch", func(t *testing.T) {
		d := &slotDispatcher{}
		m := NewMailbox(handle, WithDispatcher(d), WithCapacity(256), WithThroughput(32))
		post := func() {
			for range 200 { // the first schedules, the rest find it running
				if err := m.Post(ctx, msg); err != nil {
					t.Fatal(err)
				}
			}
			d.run()
		}
		post() // warm up: rings grow to their working size
		if allocs := testing.AllocsPerRun(100, post); allocs != 0 {
			t.Fatalf("allocs per 200 posts+handles = %v, want 0", allocs)
		}
	})
}
