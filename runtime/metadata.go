package runtime

import (
	"context"
	"errors"
	"fmt"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// Metadata is a call's metadata: string keys and values that travel with
// the request (in the envelope's metadata map), beside the message, for
// concerns that are not the procedure's own: trace context, request IDs,
// the caller's identity. Keys are compared exactly (no case folding); keys
// and values must be valid UTF-8. The caller sets it with
// AppendToOutgoingContext or WithMetadata; the handler reads it with
// MetadataFromContext.
type Metadata map[string]string

// Get returns the value of key, or "".
func (md Metadata) Get(key string) string { return md[key] }

// MaxMetadataEntries is how many metadata entries one call may carry. A
// call with more fails with CodeResourceExhausted and ErrTooMuchMetadata:
// on the calling side before anything is sent, on the handling side
// (metadata from an untrusted peer) without running the handler. The bytes
// of metadata count against the link's maximum frame size.
const MaxMetadataEntries = wire.MaxMetadataEntries

// ErrTooMuchMetadata is wrapped by the error of a call with more than
// MaxMetadataEntries metadata entries.
var ErrTooMuchMetadata = errors.New("herd: too many metadata entries")

type outgoingKey struct{}

type incomingKey struct{}

// AppendToOutgoingContext returns a context whose calls carry the metadata
// of ctx plus the given key, value pairs (a later value of a key wins). It
// panics on an odd number of arguments, as grpc-go's function of the same
// name does.
func AppendToOutgoingContext(ctx context.Context, kv ...string) context.Context {
	if len(kv)%2 != 0 {
		panic(fmt.Sprintf("herd: AppendToOutgoingContext got an odd number of strings: %d", len(kv)))
	}
	old, _ := ctx.Value(outgoingKey{}).([]string)
	md := make([]string, 0, len(old)+len(kv))
	md = append(append(md, old...), kv...)
	return context.WithValue(ctx, outgoingKey{}, md)
}

// OutgoingMetadataFromContext returns the metadata calls made with ctx
// carry (set by AppendToOutgoingContext), as a new map, or nil.
func OutgoingMetadataFromContext(ctx context.Context) Metadata {
	kv, _ := ctx.Value(outgoingKey{}).([]string)
	return pairsToMetadata(kv)
}

// MetadataFromContext returns the caller's metadata of the call being
// handled, or nil when it carried none (and outside handlers). The map is
// the handler's: it may keep or change it.
func MetadataFromContext(ctx context.Context) Metadata {
	md, _ := ctx.Value(incomingKey{}).(Metadata)
	return md
}

// WithMetadata adds key, value pairs to the metadata of a call (after those
// of its context). As a ClientOption (WithCallOptions) it applies to every
// call of the client. It panics on an odd number of arguments.
func WithMetadata(kv ...string) CallOption {
	if len(kv)%2 != 0 {
		panic(fmt.Sprintf("herd: WithMetadata got an odd number of strings: %d", len(kv)))
	}
	kv = append([]string(nil), kv...)
	return callOptionFunc(func(c *callConfig) { c.metadata = append(c.metadata, kv...) })
}

// outgoingPairs returns the key, value pairs a call with ctx and extra
// (from WithMetadata) carries, checked against MaxMetadataEntries. Without
// metadata it costs a context lookup and allocates nothing.
func outgoingPairs(ctx context.Context, extra []string) ([]string, error) {
	kv, _ := ctx.Value(outgoingKey{}).([]string)
	if len(extra) > 0 {
		kv = append(kv[:len(kv):len(kv)], extra...)
	}
	if n := len(kv) / 2; n > MaxMetadataEntries {
		return nil, NewError(CodeResourceExhausted, fmt.Errorf("%w: %d, limit is %d", ErrTooMuchMetadata, n, MaxMetadataEntries))
	}
	return kv, nil
}

func pairsToMetadata(kv []string) Metadata {
	if len(kv) < 2 {
		return nil
	}
	md := make(Metadata, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		md[kv[i]] = kv[i+1]
	}
	return md
}

// decodeMetadata copies a frame's metadata into a Metadata map (the
// frame's bytes are reused once the reader returns). It returns nil when
// the frame has none, and an *Error wrapping ErrTooMuchMetadata when it has
// more than MaxMetadataEntries.
func decodeMetadata(env *wire.Envelope) (Metadata, *Error) {
	if env.MetadataCount == 0 {
		return nil, nil
	}
	if env.MetadataCount > MaxMetadataEntries {
		return nil, NewError(CodeResourceExhausted, fmt.Errorf("%w: %d, limit is %d", ErrTooMuchMetadata, env.MetadataCount, MaxMetadataEntries))
	}
	md := make(Metadata, len(env.Metadata))
	for _, e := range env.Metadata {
		md[string(e.Key)] = string(e.Value)
	}
	return md, nil
}

// incomingContext gives a handler's context the caller's metadata.
func incomingContext(ctx context.Context, md Metadata) context.Context {
	if md == nil {
		return ctx
	}
	return context.WithValue(ctx, incomingKey{}, md)
}
