package main

import (
	"strconv"
	"strings"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// logfmt formats an event as one logfmt line: time, seq, event, then the
// event's fields (worker, pid, slot, cause, ...: the keys of herd's slog
// records).
func logfmt(ev *herdv1.AdminEvent) string {
	var b strings.Builder
	kv := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		if v == "" || strings.ContainsAny(v, " =\"\t\n\\") || !strconv.CanBackquote(v) {
			b.WriteString(strconv.Quote(v))
		} else {
			b.WriteString(v)
		}
	}
	u := func(k string, v uint64) { kv(k, strconv.FormatUint(v, 10)) }
	worker := func(w *herdv1.Worker) {
		u("worker", w.GetId())
		kv("pid", strconv.FormatInt(w.GetPid(), 10))
	}
	kv("time", ev.GetTime().AsTime().Format(time.RFC3339Nano))
	u("seq", ev.GetSeq())
	switch x := ev.GetEvent().(type) {
	case *herdv1.AdminEvent_Fork:
		kv("event", "fork")
		worker(x.Fork.GetWorker())
	case *herdv1.AdminEvent_Online:
		kv("event", "online")
		worker(x.Online.GetWorker())
	case *herdv1.AdminEvent_Listening:
		kv("event", "listening")
		worker(x.Listening.GetWorker())
		a := x.Listening.GetAddress()
		kv("network", a.GetNetwork())
		kv("address", a.GetAddress())
		u("port", uint64(a.GetPort()))
	case *herdv1.AdminEvent_Disconnect:
		kv("event", "disconnect")
		worker(x.Disconnect.GetWorker())
	case *herdv1.AdminEvent_Exit:
		kv("event", "exit")
		worker(x.Exit.GetWorker())
		kv("code", strconv.Itoa(int(x.Exit.GetCode())))
		kv("signal", x.Exit.GetSignal())
		kv("cause", causeName(x.Exit.GetCause()))
		kv("after_disconnect", strconv.FormatBool(x.Exit.GetExitedAfterDisconnect()))
		if t := x.Exit.GetStderrTail(); t != "" {
			kv("stderr_tail", t)
		}
	case *herdv1.AdminEvent_Error:
		kv("event", "error")
		worker(x.Error.GetWorker())
		kv("code", strings.ToLower(strings.TrimPrefix(x.Error.GetCode().String(), "CODE_")))
		kv("procedure", x.Error.GetProcedure())
		kv("message", x.Error.GetMessage())
	case *herdv1.AdminEvent_Ready:
		kv("event", "ready")
		worker(x.Ready.GetWorker())
		u("slot", uint64(x.Ready.GetSlot()))
		kv("source", strings.ToLower(strings.TrimPrefix(x.Ready.GetSource().String(), "READY_SOURCE_")))
	case *herdv1.AdminEvent_RestartScheduled:
		r := x.RestartScheduled
		kv("event", "restart_scheduled")
		u("slot", uint64(r.GetSlot()))
		worker(r.GetPrevious())
		u("attempt", uint64(r.GetAttempt()))
		kv("delay", r.GetDelay().AsDuration().String())
		kv("boot_failure", strconv.FormatBool(r.GetBootFailure()))
	case *herdv1.AdminEvent_SlotFailed:
		kv("event", "slot_failed")
		u("slot", uint64(x.SlotFailed.GetSlot()))
		worker(x.SlotFailed.GetLast())
		kv("reason", x.SlotFailed.GetReason())
	case *herdv1.AdminEvent_ReloadStarted:
		kv("event", "reload_started")
		kv("workers", join(x.ReloadStarted.GetWorkers()))
	case *herdv1.AdminEvent_ReloadFinished:
		kv("event", "reload_finished")
		kv("workers", join(x.ReloadFinished.GetWorkers()))
	case *herdv1.AdminEvent_ReloadAborted:
		a := x.ReloadAborted
		kv("event", "reload_aborted")
		u("slot", uint64(a.GetSlot()))
		worker(a.GetReplacement())
		kv("reason", a.GetReason())
	case *herdv1.AdminEvent_Recycled:
		r := x.Recycled
		kv("event", "recycled")
		worker(r.GetWorker())
		u("slot", uint64(r.GetSlot()))
		kv("reason", r.GetReason().String())
		u("replacement", r.GetReplacement().GetId())
	default:
		kv("event", "unknown")
	}
	return b.String()
}
