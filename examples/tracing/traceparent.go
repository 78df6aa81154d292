package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime"
)

// This file is a hand-written W3C Trace Context propagator
// (https://www.w3.org/TR/trace-context/), in a few dozen lines, to show that
// herd's interceptors and metadata are all a tracer needs: an
// OpenTelemetry propagator plugs in the same way, without herd importing
// OpenTelemetry.

// traceparentKey is the metadata key, as the HTTP header of the standard.
const traceparentKey = "traceparent"

// span is the trace context of the work in progress.
type span struct {
	traceID [16]byte
	spanID  [8]byte
	parent  [8]byte // the caller's span; zero for a root
	sampled bool
}

type spanKey struct{}

// spanFrom returns the span ctx carries.
func spanFrom(ctx context.Context) (span, bool) {
	s, ok := ctx.Value(spanKey{}).(span)
	return s, ok
}

// startSpan starts a span: a child of the span in ctx, or the root of a new
// trace.
func startSpan(ctx context.Context) (context.Context, span) {
	s, ok := spanFrom(ctx)
	if ok {
		s = s.child()
	} else {
		s = span{sampled: true}
		rand.Read(s.traceID[:])
		rand.Read(s.spanID[:])
	}
	return context.WithValue(ctx, spanKey{}, s), s
}

// child is a new span of the same trace, whose parent is s.
func (s span) child() span {
	c := span{traceID: s.traceID, parent: s.spanID, sampled: s.sampled}
	rand.Read(c.spanID[:])
	return c
}

// traceparent renders s as the header value "00-TRACE-SPAN-FLAGS".
func (s span) traceparent() string {
	flags := "00"
	if s.sampled {
		flags = "01"
	}
	return "00-" + hex.EncodeToString(s.traceID[:]) + "-" + hex.EncodeToString(s.spanID[:]) + "-" + flags
}

// parseTraceparent reads a version-00 traceparent value: the returned span
// is the caller's. Anything malformed reports false (the callee then
// starts a new trace, as the standard asks).
func parseTraceparent(v string) (span, bool) {
	var s span
	parts := strings.Split(v, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return s, false
	}
	for _, p := range parts[1:] {
		if strings.ToLower(p) != p {
			return s, false
		}
	}
	var flags [1]byte
	if _, err := hex.Decode(s.traceID[:], []byte(parts[1])); err != nil {
		return s, false
	}
	if _, err := hex.Decode(s.spanID[:], []byte(parts[2])); err != nil {
		return s, false
	}
	if _, err := hex.Decode(flags[:], []byte(parts[3])); err != nil {
		return s, false
	}
	if s.traceID == [16]byte{} || s.spanID == [8]byte{} {
		return s, false
	}
	s.sampled = flags[0]&1 != 0
	return s, true
}

// tracer is the interceptor of both sides (a runtime.Interceptor). On the
// calling side it puts the current span in the call's metadata; on the
// handling side it starts a span, child of the caller's, for the handler,
// and logs it to log when the handler returns.
type tracer struct {
	log *slog.Logger
}

// WrapUnary implements runtime.Interceptor.
func (t *tracer) WrapUnary(next runtime.UnaryFunc) runtime.UnaryFunc {
	return func(ctx context.Context, req *runtime.Request) (proto.Message, error) {
		if req.Spec.IsClient {
			if s, ok := spanFrom(ctx); ok {
				ctx = runtime.AppendToOutgoingContext(ctx, traceparentKey, s.traceparent())
			}
			return next(ctx, req)
		}
		if caller, ok := parseTraceparent(runtime.MetadataFromContext(ctx).Get(traceparentKey)); ok {
			ctx = context.WithValue(ctx, spanKey{}, caller)
		}
		ctx, _ = startSpan(ctx)
		start := time.Now()
		res, err := next(ctx, req)
		code := "ok"
		if err != nil {
			code = runtime.CodeOf(err).String()
		}
		t.log.InfoContext(ctx, "span", "procedure", req.Spec.Procedure, "peer", peerName(req.Peer),
			"code", code, "duration", time.Since(start).Round(time.Microsecond))
		return res, err
	}
}

func peerName(p runtime.Peer) string {
	if p.Primary {
		return "primary"
	}
	return "worker-" + strconv.FormatUint(p.WorkerID, 10)
}

// traceHandler adds the trace and span IDs of the record's context to
// every log record, so that a log line can be found from its trace.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if s, ok := spanFrom(ctx); ok {
		r.AddAttrs(slog.String("trace_id", hex.EncodeToString(s.traceID[:])), slog.String("span_id", hex.EncodeToString(s.spanID[:])))
		if s.parent != [8]byte{} {
			r.AddAttrs(slog.String("parent_id", hex.EncodeToString(s.parent[:])))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
