//go:build unix

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime/herdtest"
)

// The test binary doubles as the example's primary (role "tracing",
// started by herdtest.Start) and as its worker, which inherits the role:
// main tells them apart by the runtime's sentinel.
func TestMain(m *testing.M) {
	herdtest.Main(m, herdtest.Roles{"tracing": func() int { main(); return 0 }})
}

// logfmt parses a line of key=value pairs (values possibly quoted).
func logfmt(t *testing.T, line string) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for rest := line; rest != ""; {
		rest = strings.TrimLeft(rest, " ")
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			t.Fatalf("not logfmt: %q", line)
		}
		if strings.HasPrefix(v, `"`) {
			end := strings.Index(v[1:], `"`)
			if end < 0 {
				t.Fatalf("unterminated quote: %q", line)
			}
			kv[k], rest = v[1:end+1], v[end+2:]
			continue
		}
		val, after, _ := strings.Cut(v, " ")
		kv[k], rest = val, after
	}
	return kv
}

// TestTraceCrossesProcesses runs the example and checks that the worker's
// log line carries the primary's trace ID, as a child of the primary's
// span, and that the worker's call back to the primary stays in the trace.
func TestTraceCrossesProcesses(t *testing.T) {
	herdtest.CheckLeaks(t)
	// The output ends when the primary and its worker have exited; a hung
	// example is killed at the wait's bound (its output then lacks "done").
	p := herdtest.Start(t, "tracing")
	p.Timeout = 60 * time.Second
	code := p.Wait()
	lines := p.Lines()
	if code != 0 {
		t.Fatalf("example: exit status %d\n%s\nstandard error:\n%s", code, strings.Join(lines, "\n"), p.Stderr())
	}
	if len(lines) == 0 || lines[len(lines)-1] != "done" {
		t.Fatalf("the example did not finish:\n%s", strings.Join(lines, "\n"))
	}
	byMsg := map[string]map[string]string{}
	for _, line := range lines {
		if line == "done" {
			continue
		}
		kv := logfmt(t, line)
		byMsg[kv["msg"]+" "+kv["side"]+" "+kv["procedure"]] = kv
	}
	get := func(key string) map[string]string {
		kv, ok := byMsg[key]
		if !ok {
			t.Fatalf("no line %q in:\n%s", key, strings.Join(lines, "\n"))
		}
		return kv
	}
	root := get("greeting worker primary ")
	greet := get("greet worker-1 ")
	greetSpan := get("span worker-1 /tracing.v1.GreeterService/Greet")
	audit := get("audit primary ")
	auditSpan := get("span primary /tracing.v1.AuditService/Record")
	done := get("greeted primary ")

	trace := root["trace_id"]
	if len(trace) != 32 || root["parent_id"] != "" {
		t.Fatalf("root span: %v", root)
	}
	for _, kv := range []map[string]string{greet, greetSpan, audit, auditSpan, done} {
		if kv["trace_id"] != trace {
			t.Errorf("line %v: trace_id %q, want the primary's %q", kv, kv["trace_id"], trace)
		}
	}
	// The worker's handler span is a child of the primary's root span; the
	// primary's audit span a child of the worker's span.
	if greet["parent_id"] != root["span_id"] || greet["span_id"] == root["span_id"] {
		t.Errorf("worker span %v is not a child of the primary's %v", greet, root)
	}
	if audit["parent_id"] != greet["span_id"] {
		t.Errorf("audit span %v is not a child of the worker's %v", audit, greet)
	}
	if greetSpan["peer"] != "primary" || auditSpan["peer"] != "worker-1" || greetSpan["code"] != "ok" {
		t.Errorf("span lines: %v, %v", greetSpan, auditSpan)
	}
	if done["greeting"] != "hello, herd" {
		t.Errorf("greeting: %v", done)
	}
}

func TestParseTraceparent(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	s, ok := parseTraceparent(valid)
	if !ok || !s.sampled || s.traceparent() != valid {
		t.Fatalf("parse %q: %+v, %t; renders %q", valid, s, ok, s.traceparent())
	}
	if s, ok := parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"); !ok || s.sampled {
		t.Fatalf("unsampled: %+v, %t", s, ok)
	}
	for _, bad := range []string{
		"",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // unknown version
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",   // short trace
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  // not hex
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // extra field
	} {
		if s, ok := parseTraceparent(bad); ok {
			t.Errorf("parseTraceparent(%q) = %+v, want false", bad, s)
		}
	}
}
