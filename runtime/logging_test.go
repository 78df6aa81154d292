//go:build unix

package runtime_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// partialOutputMain writes half a line, waits at the primary's barrier (its
// Ask handler) until the other worker has written its half too, then
// finishes the line and writes more: a line over MaxOutputLine, a line on
// stderr and a last line without a newline.
func partialOutputMain() int {
	ctx := context.Background()
	self, err := runtime.NewSelf()
	if err != nil {
		return 10
	}
	if err := self.Start(ctx); err != nil {
		return 12
	}
	id := self.ID()
	fmt.Fprintf(os.Stdout, "alpha-%d-", id)
	if err := self.Call(ctx, testv1herd.TestServiceAskProcedure, &testv1.AskRequest{}, &testv1.AskResponse{}); err != nil {
		fmt.Fprintln(os.Stderr, "barrier:", err)
		return 13
	}
	fmt.Fprintf(os.Stdout, "omega\nsecond-")
	fmt.Fprintf(os.Stdout, "%d\n", id)
	os.Stdout.WriteString(strings.Repeat("x", runtime.MaxOutputLine+10) + "\nafter-cut-")
	fmt.Fprintf(os.Stdout, "%d\n", id)
	fmt.Fprintf(os.Stderr, "err-%d\n", id)
	fmt.Fprintf(os.Stdout, "last-%d", id)
	return 0
}

// notifyBuffer is a bytes.Buffer safe for concurrent writes that signals
// every write.
type notifyBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func newNotifyBuffer() *notifyBuffer { return &notifyBuffer{wrote: make(chan struct{}, 1)} }

func (b *notifyBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *notifyBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLines waits until the buffer holds n lines.
func (b *notifyBuffer) waitLines(t *testing.T, n int) []string {
	t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		s := b.String()
		if strings.Count(s, "\n") >= n {
			lines := strings.SplitAfter(s, "\n")
			return lines[:len(lines)-1] // after the last newline: ""
		}
		select {
		case <-b.wrote:
		case <-timer.C:
			t.Fatalf("%d lines, want %d: %q", strings.Count(s, "\n"), n, s)
		}
	}
}

func TestOutputPrefixWholeLines(t *testing.T) {
	stdout, stderr := newNotifyBuffer(), newNotifyBuffer()
	c := newCluster(t, runtime.WithOutput(stdout, stderr), runtime.WithOutputPrefix(true))
	// The barrier answers both workers once both have written half a line.
	var mu sync.Mutex
	arrived := 0
	both := make(chan struct{})
	c.p.Register(runtime.NewUnaryHandler(testv1herd.TestServiceAskProcedure, func(ctx context.Context, req *testv1.AskRequest) (*testv1.AskResponse, error) {
		mu.Lock()
		if arrived++; arrived == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &testv1.AskResponse{}, nil
	}))
	w1, w2 := c.fork("partial"), c.fork("partial")
	for _, w := range []*runtime.Worker{w1, w2} {
		if ev := c.waitExit(w); ev.GetCode() != 0 {
			t.Fatalf("worker %d: %v", w.ID(), ev)
		}
	}
	cut := regexp.QuoteMeta(strings.Repeat("x", runtime.MaxOutputLine) + " [herd: line cut]")
	line := regexp.MustCompile(`^\[worker ([12])\] (alpha-([12])-omega|second-([12])|after-cut-([12])|last-([12])|` + cut + `)\n$`)
	count := map[string]int{}
	for _, l := range stdout.waitLines(t, 10) {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("stdout line %.120q is not a whole prefixed line", l)
			continue
		}
		if n := m[3] + m[4] + m[5] + m[6]; n != "" && n != m[1] {
			t.Errorf("line %q carries worker %s's prefix", l, m[1])
		}
		count[m[1]]++
	}
	if count["1"] != 5 || count["2"] != 5 {
		t.Errorf("lines per worker %v, want 5 each:\n%s", count, stdout.String())
	}
	errLines := stderr.waitLines(t, 2)
	if got := strings.Join(errLines, ""); got != "[worker 1] err-1\n[worker 2] err-2\n" && got != "[worker 2] err-2\n[worker 1] err-1\n" {
		t.Errorf("stderr %q", got)
	}
}

// logRecords is a slog handler that keeps every record's level and message
// with its attributes as "key=value".
type logRecords struct {
	mu   sync.Mutex
	recs []string
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecords) WithGroup(string) slog.Handler            { return h }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	s := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		s += " " + a.Key + "=" + a.Value.String()
		return true
	})
	h.mu.Lock()
	h.recs = append(h.recs, s)
	h.mu.Unlock()
	return nil
}

func (h *logRecords) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.recs...)
}

// TestLoggerReceivesPrimaryRecords: a record NewPrimary makes before it has
// applied its options (a bad scheduling policy in the environment) still
// goes to the WithLogger logger, not slog.Default.
func TestLoggerReceivesPrimaryRecords(t *testing.T) {
	t.Setenv(runtime.EnvSchedPolicy, "bogus")
	var h logRecords
	runtime.NewPrimary(runtime.WithLogger(slog.New(&h)))
	recs := h.all()
	if len(recs) != 1 || !strings.HasPrefix(recs[0], "WARN herd: "+runtime.EnvSchedPolicy+" ignored") {
		t.Errorf("records %q, want the ignored policy", recs)
	}
}
