package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
)

// errUsage is a usage error already reported; run exits 2.
var errUsage = errors.New("usage")

const usage = `usage: herdctl [-socket PATH] [-timeout D] COMMAND [ARGS]

commands:
  status [-json]               the workers: slot, worker, PID, state, ready, uptime,
                               restarts, last exit, RSS, CPU, connections, mailbox depth
  reload                       replace every worker, one slot at a time; progress per slot
  scale N                      set the number of workers
  kill [-signal SIG] ID        send a signal to a worker (default SIGTERM); the pool replaces it
  disconnect [-drain D] ID     disconnect a worker gracefully; the pool drops its slot
  recycle ID                   replace a worker: its replacement first, then it drains
  watch [-all]                 print events as logfmt lines until Ctrl-C (-all: the kept history too)

The socket is -socket, else $HERD_ADMIN_SOCKET.
`

// env is one invocation: where to print, and the connection settings.
type env struct {
	stdout, stderr io.Writer
	socket         string
	timeout        time.Duration
}

// run runs herdctl with args and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("herdctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	e.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cmds := map[string]func(context.Context, []string) error{
		"status": e.status, "reload": e.reload, "scale": e.scale, "kill": e.kill,
		"disconnect": e.disconnect, "recycle": e.recycle, "watch": e.watch,
	}
	cmd, ok := cmds[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "herdctl: unknown command %q\n\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	err := cmd(ctx, fs.Args()[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintln(stderr, "herdctl:", err)
		return 1
	}
}

// flags adds the connection flags, which every command also takes after
// its name.
func (e *env) flags(fs *flag.FlagSet) {
	fs.StringVar(&e.socket, "socket", e.socket, "the primary's admin socket (default $HERD_ADMIN_SOCKET)")
	fs.DurationVar(&e.timeout, "timeout", e.timeout, "give up on a call after this long (default: none for reload, scale, disconnect and recycle; 10s for the others)")
}

// subcommand parses a command's flags and checks its number of arguments.
func (e *env) subcommand(name, args string, n int, argv []string, define func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet("herdctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: herdctl %s %s\n", name, args)
		fs.PrintDefaults()
	}
	if define != nil {
		define(fs)
	}
	e.flags(fs)
	if err := fs.Parse(argv); err != nil {
		return nil, errUsage
	}
	if fs.NArg() != n {
		fs.Usage()
		return nil, errUsage
	}
	return fs.Args(), nil
}

// workerID parses a worker ID argument.
func (e *env) workerID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		fmt.Fprintf(e.stderr, "herdctl: %q is not a worker ID (herdctl status lists them)\n", s)
		return 0, errUsage
	}
	return id, nil
}

// callCtx bounds a call by -timeout, or by def when -timeout was not given
// (0: no bound).
func (e *env) callCtx(ctx context.Context, def time.Duration) (context.Context, context.CancelFunc) {
	d := e.timeout
	if d == 0 {
		d = def
	}
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// conn is a connection to the admin socket.
type conn struct {
	*runtime.AdminConn
	admin herdv1herd.AdminServiceClient
}

// dial connects to the socket, with errors a person can act on.
func (e *env) dial(ctx context.Context) (*conn, error) {
	path := e.socket
	if path == "" {
		path = os.Getenv(runtime.EnvAdminSocket)
	}
	if path == "" {
		return nil, fmt.Errorf("no admin socket: pass -socket PATH or set %s (the primary serves one with %s=PATH or runtime.WithAdminSocket)", runtime.EnvAdminSocket, runtime.EnvAdminSocket)
	}
	e.socket = path
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := runtime.DialAdmin(dctx, path)
	switch {
	case err == nil:
		return &conn{AdminConn: c, admin: herdv1herd.NewAdminServiceClient(c)}, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no admin socket at %s: is the primary running, with %s=%s (or runtime.WithAdminSocket)?", path, runtime.EnvAdminSocket, path)
	case errors.Is(err, syscall.ECONNREFUSED):
		if fi, serr := os.Lstat(path); serr == nil && fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s is not a socket: is -socket (or %s) the path the primary was given?", path, runtime.EnvAdminSocket)
		}
		return nil, fmt.Errorf("nothing answers at %s: the primary that created it is gone (the socket file is stale)", path)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("permission denied on %s%s: run herdctl as the primary's user or root, or have the primary widen the socket's mode and allow your user (runtime.WithAdminSocketMode, runtime.WithAdminAllowUIDs)", path, socketOwner(path))
	default:
		return nil, fmt.Errorf("cannot connect to %s: %w", path, err)
	}
}

// callError says what went wrong with a call, for a person.
func (e *env) callError(what string, err error) error {
	switch runtime.CodeOf(err) {
	case runtime.CodeUnavailable:
		return fmt.Errorf("%s: the primary at %s closed the connection (it stopped, or is stopping): %v", what, e.socket, err)
	case runtime.CodeDeadlineExceeded:
		return fmt.Errorf("%s: no answer within %v (-timeout)", what, e.timeout)
	case runtime.CodeCanceled:
		return fmt.Errorf("%s: interrupted", what)
	}
	var re *runtime.Error
	if errors.As(err, &re) {
		return fmt.Errorf("%s: %s (%s)", what, re.Message(), re.Code())
	}
	return fmt.Errorf("%s: %w", what, err)
}

// join formats IDs as 1,2,3.
func join(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ",")
}
