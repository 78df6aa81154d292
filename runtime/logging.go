package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
)

// Logging. herd writes two kinds of output, kept apart.
//
// Workers' own output. A worker's stdout and stderr are the primary's (or
// those of WithOutput) unless WithSilent gives them pipes. With
// WithOutputPrefix each line a worker writes is prefixed with its name,
// "[worker 3] ", as PM2 does, and lines are written whole: the primary reads
// each worker stream through a line-buffered copier, so two workers writing
// at once never interleave half lines. A line longer than MaxOutputLine is
// cut there, with the marker " [herd: line cut]", and the rest of it up to
// the next newline is dropped; a last line without a newline is completed
// with one when the stream ends. A process a worker starts that inherits the
// worker's stdout or stderr keeps the stream open: its lines carry the
// worker's prefix, and the copier ends when it closes.
//
// herd's own records (lifecycle, errors, the reaper, systemd notifications)
// go to the *slog.Logger of WithLogger, slog.Default otherwise, at these
// levels: Error for a panic in a handler; Warn for what an operator should
// look at (a worker that could not be waited for, a failed event handler, an
// ignored environment setting such as a malformed WATCHDOG_USEC); Debug for
// what is expected in normal operation (an orphan reaped, a notification
// with no systemd listening). Messages start with "herd: ". Attribute keys
// are stable, and mean the same wherever they appear:
//
//	worker     the worker's ID (uint64), as Worker.ID
//	pid        a process ID: the worker's, or an orphan's for the reaper
//	slot       a pool slot (Pool)
//	cause      an exit cause, herd.v1.ExitCause
//	code       a Code, or a process's exit code
//	signal     a signal's name, "SIGTERM"
//	procedure  a procedure name, "/pkg.Service/Method"
//	error      the error
//	status     a reaped process's status, "exit 0" or "signal SIGKILL"
//	socket     the sd_notify socket
//	value      the rejected value of an environment variable
//	handle     a shared server port, "tcp 127.0.0.1:8000 (rr)"
//	retry_in   how long a listener waits before it accepts again
//	count      how many descriptors a worker gave back unasked
//	rescued    connections of a departed worker handed to the others
//	closed     connections of a departed worker no other worker took
//	panic      a recovered panic's value, with stack, its stack
//	timeout    the limit that ran out
//	reason     why a pool slot failed
//
// A worker logs with its own WithLogger (NewSelf); before NewSelf (package
// initialisation), it logs with slog.Default.

// MaxOutputLine is the longest line WithOutputPrefix copies whole; a longer
// line is cut (see Logging above).
const MaxOutputLine = 64 << 10

// outputCutMarker ends a line cut at MaxOutputLine.
const outputCutMarker = " [herd: line cut]"

// WithOutputPrefix prefixes each line of workers' stdout and stderr with
// "[worker ID] " and writes lines whole (see Logging in this file's doc). It
// applies to workers' output that goes to the primary's stdout and stderr
// or to WithOutput's writers, not to WithSilent's pipes.
func WithOutputPrefix(on bool) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.prefixOutput = on })
}

// outputMu serialises whole lines from every worker's copier, whatever
// their destination: one lock keeps lines whole even when two destinations
// are one file.
var outputMu sync.Mutex

// lineWriter buffers one worker stream and writes it to dst a whole line at
// a time, each prefixed.
type lineWriter struct {
	dst    io.Writer
	prefix []byte
	buf    []byte // the current line, prefix included
	cut    bool   // dropping the rest of a line cut at MaxOutputLine
}

func newLineWriter(dst io.Writer, id uint64) *lineWriter {
	p := []byte("[worker " + strconv.FormatUint(id, 10) + "] ")
	return &lineWriter{dst: dst, prefix: p, buf: append(make([]byte, 0, len(p)+256), p...)}
}

// Write implements io.Writer: complete lines are written, the rest kept.
// Errors from dst are dropped (a worker's output has nowhere else to go),
// so that the copier keeps draining the pipe and the worker never blocks on
// a full one.
func (l *lineWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !l.cut {
			room := MaxOutputLine - (len(l.buf) - len(l.prefix))
			if len(chunk) > room {
				l.buf = append(l.buf, chunk[:room]...)
				l.buf = append(l.buf, outputCutMarker...)
				l.emit()
				l.cut = true
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		if i < 0 {
			break
		}
		if !l.cut {
			l.emit()
		}
		l.cut = false
		b = b[i+1:]
	}
	return n, nil
}

// emit writes the buffered line with a newline and starts the next one.
func (l *lineWriter) emit() {
	l.buf = append(l.buf, '\n')
	outputMu.Lock()
	_, _ = l.dst.Write(l.buf)
	outputMu.Unlock()
	l.buf = l.buf[:len(l.prefix)]
	if cap(l.buf) > 4096 {
		l.buf = append(make([]byte, 0, len(l.prefix)+256), l.prefix...) // give back a long line's memory
	}
}

// flush completes a last line that has no newline.
func (l *lineWriter) flush() {
	if len(l.buf) > len(l.prefix) && !l.cut {
		l.emit()
	}
}

// copyLines reads r to its end through l, then closes r.
func (l *lineWriter) copyLines(r *os.File) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		l.Write(buf[:n])
		if err != nil {
			if !errors.Is(err, io.EOF) {
				l.Write([]byte("\n")) // end the line the error cut
			}
			break
		}
	}
	l.flush()
	r.Close()
}

// pipeOutput gives the worker a pipe for each of its streams that goes to a
// lineWriter (set by command for WithOutputPrefix), and starts its copier.
// It returns the child's ends, added to pipes, for the caller to close once
// the worker has started. A copier is not tied to the worker's life: it
// ends when every process holding the stream has closed it.
func pipeOutput(cmd *exec.Cmd, pipes []*os.File) ([]*os.File, error) {
	for _, stream := range []*io.Writer{&cmd.Stdout, &cmd.Stderr} {
		lw, ok := (*stream).(*lineWriter)
		if !ok {
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return pipes, fmt.Errorf("output pipe: %w", err)
		}
		*stream = w
		pipes = append(pipes, w)
		go lw.copyLines(r)
	}
	return pipes, nil
}
