package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The HTTP load: a fixed number of connections to a loopback address, for
// a fixed time, each sending GET / and reading the response before sending
// the next (keep-alive), or opening a new connection for every request
// (close mode, "Connection: close"). wrk does it when it is installed;
// otherwise, or for runs shorter than wrk's one-second resolution, the
// built-in Go client below.

// loadResult is what one load run measured.
type loadResult struct {
	requests int64         // responses completed within the run
	errors   int64         // failed connects, reads, writes or non-2xx responses
	elapsed  time.Duration // measuring time
	first    error         // the first error (built-in client only)
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// findTools picks the load generator and says which.
func (cfg *config) findTools(out io.Writer) error {
	wrk, _ := exec.LookPath("wrk")
	switch cfg.load {
	case "go":
		fmt.Fprintf(out, "load: built-in Go client (-load go), %d connections, %v per run\n", cfg.connections, cfg.duration)
	case "wrk":
		if wrk == "" {
			return errors.New("-load wrk: wrk is not on PATH")
		}
		if cfg.duration < time.Second {
			return fmt.Errorf("-load wrk: wrk measures whole seconds; -duration %v is shorter", cfg.duration)
		}
		cfg.wrkPath = wrk
	case "auto":
		switch {
		case wrk == "":
			fmt.Fprintf(out, "load: built-in Go client (wrk not found on PATH), %d connections, %v per run\n", cfg.connections, cfg.duration)
		case cfg.duration < time.Second:
			fmt.Fprintf(out, "load: built-in Go client (-duration %v is below wrk's one-second resolution), %d connections\n", cfg.duration, cfg.connections)
		default:
			cfg.wrkPath = wrk
		}
	default:
		return fmt.Errorf("-load %q: want auto, wrk or go", cfg.load)
	}
	if cfg.wrkPath != "" {
		fmt.Fprintf(out, "load: wrk (%s), %d threads, %d connections, %v per run\n", cfg.wrkPath, wrkThreads(cfg), cfg.connections, wrkDuration(cfg.duration))
	}
	return nil
}

// runLoad loads addr (host:port) for cfg.duration. More than one error in
// a hundred requests fails the run: a throughput measured on failing
// requests means nothing.
func runLoad(ctx context.Context, cfg *config, addr string, closeConns bool) (loadResult, error) {
	var r loadResult
	var err error
	if cfg.wrkPath != "" {
		r, err = runWrk(ctx, cfg, addr, closeConns)
	} else {
		r, err = goLoad(ctx, addr, cfg.connections, cfg.duration, closeConns, 0)
	}
	if err != nil {
		return r, err
	}
	if r.errors > r.requests/100 {
		if r.first != nil {
			return r, fmt.Errorf("%d errors for %d requests; first: %v", r.errors, r.requests, r.first)
		}
		return r, fmt.Errorf("%d errors for %d requests", r.errors, r.requests)
	}
	return r, nil
}

// The built-in client.

// goLoad runs conns connections against addr for d. Each connection is a
// goroutine with a pre-built request and a response parser that handles
// what hello-world servers send: a status line, headers and a
// Content-Length body. When no response completes within d, the first
// one after it is counted and the run is measured up to it. Errors are
// counted until the end of the run, and after it a request that timed out:
// the server never answered it. A request times out reqTimeout after it
// started (when not zero), and in any case 5 seconds after the end of the
// run. It fails only when no request completed; the caller judges the
// errors.
func goLoad(ctx context.Context, addr string, conns int, d time.Duration, closeConns bool, reqTimeout time.Duration) (loadResult, error) {
	if err := checkLoopback(addr); err != nil {
		return loadResult{}, err
	}
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: herd-bench\r\n\r\n"
	if closeConns {
		req = "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: herd-bench\r\nConnection: close\r\n\r\n"
	}
	var (
		requests, failures atomic.Int64
		firstErr           error
		errOnce            sync.Once
		wg                 sync.WaitGroup
	)
	fail := func(err error) {
		failures.Add(1)
		errOnce.Do(func() { firstErr = err })
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	end := start.Add(d)
	var lateEnd atomic.Int64 // unix nanos of a response counted after the end
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &loadConn{addr: addr, req: []byte(req), end: end, timeout: reqTimeout}
			for ctx.Err() == nil && time.Now().Before(end) {
				if err := c.roundTrip(closeConns); err != nil {
					if time.Now().Before(end) {
						fail(err)
						time.Sleep(time.Millisecond) // no busy loop on a refusing server
					} else if errors.Is(err, os.ErrDeadlineExceeded) {
						fail(err)
					}
					continue
				}
				if now := time.Now(); now.Before(end) {
					requests.Add(1)
				} else if requests.CompareAndSwap(0, 1) {
					// Nothing completed within the run (a loaded
					// machine, a very short run): the first late
					// response counts, and the run is measured to it.
					lateEnd.Store(now.UnixNano())
				}
			}
			c.close()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if elapsed > d {
		elapsed = d // responses after the end are not counted
	}
	if late := lateEnd.Load(); late != 0 {
		elapsed = time.Unix(0, late).Sub(start)
	}
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	r := loadResult{requests: requests.Load(), errors: failures.Load(), elapsed: elapsed, first: firstErr}
	if r.requests == 0 {
		return r, fmt.Errorf("no request completed; first error: %v", firstErr)
	}
	return r, nil
}

// loadConn is one client connection of the built-in client.
type loadConn struct {
	addr    string
	req     []byte
	end     time.Time
	timeout time.Duration // per request; zero: none but the run's
	conn    net.Conn
	br      *bufio.Reader
}

// roundTrip sends one request and reads its response, connecting first
// when there is no connection; with closeConn the connection is closed
// after the response.
func (c *loadConn) roundTrip(closeConn bool) error {
	// A server that stops answering cannot hold the run past its end.
	deadline := c.end.Add(5 * time.Second)
	if t := time.Now().Add(c.timeout); c.timeout > 0 && t.Before(deadline) {
		deadline = t
	}
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, time.Until(deadline))
		if err != nil {
			return err
		}
		conn.SetDeadline(deadline)
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 4096)
		} else {
			c.br.Reset(conn)
		}
	} else if c.timeout > 0 {
		c.conn.SetDeadline(deadline)
	}
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return err
	}
	keep, err := readResponse(c.br)
	if err != nil || closeConn || !keep {
		c.close()
	}
	return err
}

func (c *loadConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

var errBadResponse = errors.New("bad HTTP response")

// readResponse reads one response and discards its body. It reports
// whether the server keeps the connection open.
func readResponse(br *bufio.Reader) (keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return false, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	if line[9] != '2' {
		return false, fmt.Errorf("%w: status %q", errBadResponse, bytes.TrimSpace(line[9:]))
	}
	keepAlive = line[7] == '1'
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		if len(line) <= 2 {
			break // the blank line
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return false, fmt.Errorf("%w: header %q", errBadResponse, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 {
				return false, fmt.Errorf("%w: Content-Length %q", errBadResponse, value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keepAlive = false
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return false, fmt.Errorf("%w: Transfer-Encoding %q not supported", errBadResponse, value)
		}
	}
	if length < 0 {
		return false, fmt.Errorf("%w: no Content-Length", errBadResponse)
	}
	if _, err := br.Discard(length); err != nil {
		return false, err
	}
	return keepAlive, nil
}

// checkLoopback refuses to load anything but a loopback address.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("load target %s is not a loopback address", addr)
	}
	return nil
}

// wrk.

func wrkThreads(cfg *config) int { return max(1, min(goruntime.NumCPU(), cfg.connections)) }

// wrkDuration is d in wrk's whole seconds, at least one.
func wrkDuration(d time.Duration) time.Duration {
	return max(time.Second, d.Round(time.Second))
}

var (
	wrkRPS    = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkTotal  = regexp.MustCompile(`(?m)^\s*([0-9]+) requests in ([0-9.]+)(us|ms|s|m|h)`)
	wrkSocket = regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: ([0-9]+)`)
	wrkUnits  = map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}
)

// runWrk runs wrk against addr and parses its summary.
func runWrk(ctx context.Context, cfg *config, addr string, closeConns bool) (loadResult, error) {
	if err := checkLoopback(addr); err != nil {
		return loadResult{}, err
	}
	d := wrkDuration(cfg.duration)
	args := []string{
		"-t", strconv.Itoa(wrkThreads(cfg)),
		"-c", strconv.Itoa(cfg.connections),
		"-d", strconv.Itoa(int(d / time.Second)),
		"--timeout", "5",
	}
	if closeConns {
		args = append(args, "-H", "Connection: close")
	}
	args = append(args, "http://"+addr+"/")
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.wrkPath, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk %s: %w: %s", strings.Join(args, " "), err, out)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		cfg.log.Warn("wrk failed", "args", strings.Join(args, " "), "output", string(out))
	}
	return r, err
}

// parseWrk reads the figures of wrk's summary.
func parseWrk(out string) (loadResult, error) {
	var r loadResult
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil || wrkRPS.FindStringSubmatch(out) == nil {
		return r, fmt.Errorf("no summary in wrk output: %q", truncate(out, 300))
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	secs, _ := strconv.ParseFloat(m[2], 64)
	r.elapsed = time.Duration(secs * float64(wrkUnits[m[3]]))
	if s := wrkSocket.FindStringSubmatch(out); s != nil {
		for _, n := range s[1:] {
			v, _ := strconv.ParseInt(n, 10, 64)
			r.errors += v
		}
	}
	if s := wrkNon2xx.FindStringSubmatch(out); s != nil {
		v, _ := strconv.ParseInt(s[1], 10, 64)
		r.errors += v
	}
	if r.requests == 0 || r.elapsed <= 0 {
		return r, fmt.Errorf("wrk completed no request in %v (%d socket errors)", r.elapsed, r.errors)
	}
	return r, nil
}

// truncate shortens s to n bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
