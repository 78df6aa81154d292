package runtime

// WithSubreaper makes the primary a child subreaper (Linux's
// PR_SET_CHILD_SUBREAPER) that reaps the orphans re-parented to it: a
// process a worker started outlives the worker, and when it exits it is
// waited for by the primary rather than by the system's init. A primary that
// is PID 1 (a container's entry point) does this without the option, as
// init must. Workers' own exit statuses are never taken (see reaper_linux.go
// for how); a child the primary's program starts itself with os/exec is
// reaped as an orphan would be, so its Cmd.Wait fails: start such programs
// as workers. The option is process-wide, takes effect at NewPrimary, and
// does nothing outside Linux (a warning is logged).
func WithSubreaper() PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.subreaper = true })
}
