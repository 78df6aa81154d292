package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// The environment systemd gives a service of Type=notify or notify-reload
// (sd_notify(3), sd_watchdog_enabled(3)).
const (
	// EnvNotifySocket is the datagram socket notifications go to: a path,
	// or an abstract name written with a leading '@'.
	EnvNotifySocket = "NOTIFY_SOCKET"
	// EnvWatchdogUSec is the service's watchdog timeout in microseconds.
	EnvWatchdogUSec = "WATCHDOG_USEC"
	// EnvWatchdogPID, when set, names the one process the watchdog
	// settings are for.
	EnvWatchdogPID = "WATCHDOG_PID"
)

// systemdOnly reports whether the environment variable k is systemd's word
// to the service's main process, which the primary keeps from its workers.
func systemdOnly(k string) bool {
	return k == EnvNotifySocket || k == EnvWatchdogUSec || k == EnvWatchdogPID
}

// The notifications herd sends (sd_notify(3)); pass them, or any other
// "KEY=value" assignment, to Notifier.Notify.
const (
	NotifyReady     = "READY=1"
	NotifyReloading = "RELOADING=1"
	NotifyStopping  = "STOPPING=1"
	NotifyWatchdog  = "WATCHDOG=1"
)

// ErrNotifyState is returned by Notifier.Notify for a state that is not a
// single "KEY=value" assignment (no '=', an empty key, or a newline, which
// would smuggle a second assignment into the datagram).
var ErrNotifyState = errors.New("herd: malformed sd_notify state")

// NotifyStatus returns the STATUS= assignment for a one-line summary; line
// breaks in s become spaces.
func NotifyStatus(s string) string {
	return "STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// NotifyMainPID returns the MAINPID= assignment, which tells systemd that
// pid, not the sender, is the service's main process.
func NotifyMainPID(pid int) string { return "MAINPID=" + strconv.Itoa(pid) }

// Notifier speaks systemd's notification protocol (sd_notify(3)) without
// libsystemd: each Notify is one datagram to the unix socket named by
// $NOTIFY_SOCKET, whose text is newline-separated "KEY=value" assignments.
// A Notifier whose socket is absent (not run by systemd, or by a unit whose
// Type is not notify) or unreachable does nothing: Notify then returns nil
// and logs at debug level, so a program notifies unconditionally. The zero
// Notifier is not usable; use NewNotifier.
type Notifier struct {
	socket string
	log    *slog.Logger
}

// NewNotifier returns a Notifier for $NOTIFY_SOCKET, logging to log
// (slog.Default when nil). NewPrimary leaves NOTIFY_SOCKET and the watchdog
// variables in the primary's environment but keeps them from its workers,
// so an untrusted worker cannot speak for the service.
func NewNotifier(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.Default()
	}
	return &Notifier{socket: os.Getenv(EnvNotifySocket), log: log}
}

// Enabled reports whether $NOTIFY_SOCKET was set.
func (n *Notifier) Enabled() bool { return n.socket != "" }

// Notify sends the assignments in one datagram. It returns ErrNotifyState
// (and sends nothing) for a malformed assignment; a socket that is absent or
// unreachable is not an error (see Notifier).
func (n *Notifier) Notify(state ...string) error {
	for _, s := range state {
		k, _, ok := strings.Cut(s, "=")
		if !ok || k == "" || strings.ContainsAny(s, "\n\x00") {
			return fmt.Errorf("%w: %q", ErrNotifyState, s)
		}
	}
	if n.socket == "" || len(state) == 0 {
		return nil
	}
	msg := strings.Join(state, "\n") + "\n"
	if err := sendNotify(n.socket, []byte(msg)); err != nil {
		n.log.Debug("herd: sd_notify not delivered", "socket", n.socket, "state", strings.Join(state, " "), "error", err)
	}
	return nil
}

// Ready sends READY=1, with an optional STATUS= summary.
func (n *Notifier) Ready(status string) error { return n.Notify(withStatus(status, NotifyReady)...) }

// Reloading sends RELOADING=1 with MONOTONIC_USEC, the CLOCK_MONOTONIC time
// Type=notify-reload requires with it; READY=1 ends the reload.
func (n *Notifier) Reloading(status string) error {
	return n.Notify(withStatus(status, NotifyReloading, "MONOTONIC_USEC="+strconv.FormatUint(monotonicUsec(), 10))...)
}

// Stopping sends STOPPING=1.
func (n *Notifier) Stopping(status string) error {
	return n.Notify(withStatus(status, NotifyStopping)...)
}

func withStatus(status string, state ...string) []string {
	if status != "" {
		state = append(state, NotifyStatus(status))
	}
	return state
}

// Notify sends the assignments to $NOTIFY_SOCKET with a Notifier logging to
// slog.Default: runtime.Notify(runtime.NotifyReady).
func Notify(state ...string) error { return NewNotifier(nil).Notify(state...) }

// WatchdogInterval returns the service's watchdog timeout from
// $WATCHDOG_USEC, and whether the watchdog is enabled for this process.
// It is not when WATCHDOG_USEC is unset, or when WATCHDOG_PID is set and
// names another process. A malformed WATCHDOG_USEC (not a positive integer)
// or WATCHDOG_PID disables it with a warning on log (slog.Default when nil):
// pinging at a guessed rate would be worse than not pinging.
func WatchdogInterval(log *slog.Logger) (time.Duration, bool) {
	if log == nil {
		log = slog.Default()
	}
	v, ok := os.LookupEnv(EnvWatchdogUSec)
	if !ok {
		return 0, false
	}
	if p, ok := os.LookupEnv(EnvWatchdogPID); ok {
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			log.Warn("herd: "+EnvWatchdogPID+" ignored: not a process ID, watchdog disabled", "value", p)
			return 0, false
		}
		if pid != os.Getpid() {
			return 0, false
		}
	}
	us, err := strconv.ParseUint(v, 10, 63)
	if err != nil || us == 0 || us > uint64(1<<63-1)/uint64(time.Microsecond) {
		log.Warn("herd: "+EnvWatchdogUSec+" ignored: not a positive number of microseconds, watchdog disabled", "value", v)
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}

// RunWatchdog sends WATCHDOG=1 every half of the watchdog timeout
// (WatchdogInterval, as sd_watchdog_enabled(3) advises) for as long as
// healthy, asked before each ping, says so; while it does not, no ping is
// sent, so systemd's watchdog expires and restarts the service. A nil
// healthy is always healthy. RunWatchdog returns nil at once when the
// watchdog is not enabled, and ctx's error when ctx ends.
func (n *Notifier) RunWatchdog(ctx context.Context, healthy func() bool) error {
	d, ok := WatchdogInterval(n.log)
	if !ok {
		return nil
	}
	return n.runWatchdog(ctx, d, healthy)
}

// runWatchdog is RunWatchdog for the watchdog timeout d.
func (n *Notifier) runWatchdog(ctx context.Context, d time.Duration, healthy func() bool) error {
	t := time.NewTicker(d / 2)
	defer t.Stop()
	for {
		if healthy == nil || healthy() {
			_ = n.Notify(NotifyWatchdog)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// notifyStopping sends STOPPING=1 when the primary runs under systemd's
// Type=notify: a graceful stop of every worker has started. Primary.Disconnect
// calls it; a graceful stop that disconnects workers another way should too.
func (p *Primary) notifyStopping() { _ = NewNotifier(p.log).Stopping("") }
