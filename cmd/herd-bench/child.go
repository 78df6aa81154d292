package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Every measured system runs in child processes of the harness. A child
// talks to the harness over its stdout, one line per message:
//
//	ready {"port": 40123}      a server is listening (HTTP systems)
//	result {"value": 1.5e6}    the measurement, the last line
//
// and stops when its stdin reaches EOF. Anything else it prints is ignored;
// its stderr is kept (the last few KiB) for error messages.
const (
	lineReady  = "ready"
	lineResult = "result"
)

// envRole selects the role of a child that is not a herd worker; herd
// workers are told theirs with envWorkerRole (the primary's own environment,
// envRole included, is inherited by its workers).
const (
	envRole       = "HERD_BENCH_ROLE"
	envWorkerRole = "HERD_BENCH_WORKER"
	envMode       = "HERD_BENCH_MODE"
	envDurationMS = "HERD_BENCH_DURATION_MS"
	envWorkers    = "HERD_BENCH_WORKERS"
)

// childTimeout bounds a child's start-up and its wind-down on top of the
// measuring time.
const childTimeout = 60 * time.Second

// child is a running child process.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *tailBuffer
	exited chan struct{}
	err    error // of cmd.Wait, once exited is closed
	quit   chan struct{}
	once   sync.Once
	after  func() // run by kill, once the child is gone: what it may leave behind
}

// runSelf runs this binary in role, with the measuring duration and env in
// its environment, waits for its result and reaps it.
func runSelf(ctx context.Context, cfg *config, role string, env ...string) (map[string]float64, error) {
	c, err := startSelf(cfg, role, env...)
	if err != nil {
		return nil, err
	}
	defer c.kill()
	res, err := c.await(ctx, lineResult, cfg.duration+childTimeout)
	if err != nil {
		return nil, err
	}
	if err := c.finish(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// startSelf starts this binary in role as a child.
func startSelf(cfg *config, role string, env ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(childEnv(cfg), envRole+"="+role)
	cmd.Env = append(cmd.Env, env...)
	return startChild(role, cmd)
}

// childEnv is the environment of every child: ours, without the variables
// that would make it a worker or pick a role, plus the measuring duration
// and the HTTP cluster size.
func childEnv(cfg *config) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case envRole, envWorkerRole, envMode, envDurationMS, envWorkers, envKill, envProfile, envTrace, "HERD_SCHED_POLICY", "NODE_CLUSTER_SCHED_POLICY", "PM2_HOME", envPM2Module:
			continue
		}
		env = append(env, kv)
	}
	env = append(env, cfg.childEnv...)
	return append(env,
		envDurationMS+"="+strconv.FormatInt(cfg.duration.Milliseconds(), 10),
		envWorkers+"="+strconv.Itoa(cfg.workers))
}

// startChild starts cmd in a process group of its own, so that whatever it
// starts can be killed with it.
func startChild(name string, cmd *exec.Cmd) (*child, error) {
	c := &child{name: name, cmd: cmd, lines: make(chan string, 64), stderr: &tailBuffer{max: 8 << 10}, exited: make(chan struct{}), quit: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		stdin.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cmd.Stderr = c.stderr
	// Grandchildren that outlive the child keep its output pipes open; do
	// not wait for them.
	cmd.WaitDelay = 2 * time.Second
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		stdin.Close()
		stdout.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.stdin = stdin
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		defer close(c.lines)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			case <-c.quit:
				return // nobody reads any more; Wait closes stdout
			}
		}
	}()
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// await waits for the next line of the given kind and decodes its JSON
// object; the child's other lines are skipped.
func (c *child) await(ctx context.Context, kind string, timeout time.Duration) (map[string]float64, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				<-c.exited
				return nil, c.failure(fmt.Errorf("exited (%v) without a %q line", c.err, kind))
			}
			rest, found := strings.CutPrefix(line, kind+" ")
			if !found {
				continue
			}
			var v map[string]float64
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				return nil, c.failure(fmt.Errorf("bad %q line %q: %w", kind, line, err))
			}
			return v, nil
		case <-t.C:
			return nil, c.failure(fmt.Errorf("no %q line within %v", kind, timeout))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// stop closes the child's stdin: its request to stop.
func (c *child) stop() { c.stdin.Close() }

// finish asks the child to stop and waits for it to exit cleanly.
func (c *child) finish(ctx context.Context) error {
	c.stop()
	t := time.NewTimer(childTimeout)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
		return c.failure(fmt.Errorf("did not exit within %v of its stdin closing", childTimeout))
	case <-ctx.Done():
		return ctx.Err()
	}
	if c.err != nil {
		return c.failure(fmt.Errorf("exit: %w", c.err))
	}
	return nil
}

// kill ends the child and its process group, if they are still there, and
// reaps the child. It is safe after finish.
func (c *child) kill() {
	c.once.Do(func() { close(c.quit) })
	c.stdin.Close()
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	killProcessGroup(c.cmd)
	if c.after != nil {
		c.after()
		c.after = nil
	}
}

// failure wraps err with the child's name and the end of its stderr.
func (c *child) failure(err error) error {
	if tail := strings.TrimSpace(c.stderr.String()); tail != "" {
		return fmt.Errorf("%s: %w; its stderr ends:\n%s", c.name, err, tail)
	}
	return fmt.Errorf("%s: %w", c.name, err)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// The child side of the protocol.

// emit prints one protocol line to stdout.
func emit(kind string, v map[string]float64) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // a map of finite float64s always marshals
	}
	fmt.Fprintf(os.Stdout, "%s %s\n", kind, b)
}

// stdinClosed returns a channel closed when stdin reaches EOF (or fails):
// the harness's request to stop.
func stdinClosed() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(ch)
	}()
	return ch
}

// roleDuration reads the measuring duration from the environment.
func roleDuration() (time.Duration, error) {
	ms, err := strconv.ParseInt(os.Getenv(envDurationMS), 10, 64)
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("bad %s=%q", envDurationMS, os.Getenv(envDurationMS))
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// roleInt reads a positive integer from the environment.
func roleInt(name string) (int, error) {
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad %s=%q", name, os.Getenv(name))
	}
	return n, nil
}

var errUnsupported = errors.New("not supported on this platform")
