package runtime

import (
	"context"
	"os"
)

type filesKey struct{}

type workerKey struct{}

// FilesFromContext returns the files attached to the call being handled
// (sent with WithFiles). The handler owns them and must close them. For a
// connection or listener, net.FileConn or net.FileListener turns the file
// into one (and the file may then be closed).
func FilesFromContext(ctx context.Context) []*os.File {
	files, _ := ctx.Value(filesKey{}).([]*os.File)
	return files
}

// WorkerFromContext returns the worker whose message is being handled, in
// a handler registered on the primary. It reports false on the worker side
// and outside handlers.
func WorkerFromContext(ctx context.Context) (*Worker, bool) {
	w, ok := ctx.Value(workerKey{}).(*Worker)
	return w, ok
}
