package runtime

import (
	"context"
	"os"
	"sync"
)

type filesKey struct{}

type workerKey struct{}

// callFilesBox holds the files attached to the call being handled, and
// whether the handler took them.
type callFilesBox struct {
	mu    sync.Mutex
	files []*os.File
	taken bool
	done  bool // the handler returned: the files were closed or taken
}

// FilesFromContext returns the files attached to the call being handled
// (sent with WithFiles). They stay the runtime's: they are valid while the
// handler runs and are closed when it returns, unless the handler took them
// with TakeFiles. For a connection or listener, net.FileConn or
// net.FileListener makes a new descriptor of its own, which the handler may
// keep without taking the file.
func FilesFromContext(ctx context.Context) []*os.File { return handlerFiles(ctx, false) }

// TakeFiles returns the files attached to the call being handled, as
// FilesFromContext does, and makes the caller their owner: the runtime no
// longer closes them when the handler returns, and the caller must close
// them. It returns nil once the handler has returned without taking them
// (they are closed then).
func TakeFiles(ctx context.Context) []*os.File { return handlerFiles(ctx, true) }

// handlerFiles is FilesFromContext, and TakeFiles when take is set.
func handlerFiles(ctx context.Context, take bool) []*os.File {
	b, _ := ctx.Value(filesKey{}).(*callFilesBox)
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done && !b.taken {
		return nil
	}
	if take {
		b.taken = true
	}
	return b.files
}

// withFiles returns ctx carrying files for FilesFromContext and TakeFiles,
// and the function to call when the handler returns: it closes the files
// unless they were taken.
func withFiles(ctx context.Context, files []*os.File) (context.Context, *callFilesBox) {
	b := &callFilesBox{files: files}
	return context.WithValue(ctx, filesKey{}, b), b
}

// release closes the files unless the handler took them.
func (b *callFilesBox) release() {
	b.mu.Lock()
	b.done = true
	taken := b.taken
	b.mu.Unlock()
	if !taken {
		closeFiles(b.files)
	}
}

// WorkerFromContext returns the worker whose message is being handled, in
// a handler registered on the primary. It reports false on the worker side
// and outside handlers.
func WorkerFromContext(ctx context.Context) (*Worker, bool) {
	w, ok := ctx.Value(workerKey{}).(*Worker)
	return w, ok
}
