package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// defaultCallTimeout bounds the quick calls (status, kill) unless -timeout
// says otherwise.
const defaultCallTimeout = 10 * time.Second

// status prints the pool's workers, as a table or as JSON.
func (e *env) status(ctx context.Context, argv []string) error {
	var asJSON bool
	if _, err := e.subcommand("status", "[-json]", 0, argv, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print a JSON object (workers: one object per worker) for scripts")
	}); err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := e.callCtx(ctx, defaultCallTimeout)
	defer cancel()
	st, err := c.admin.Status(cctx, &herdv1.StatusRequest{})
	if err != nil {
		return e.callError("status", err)
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(statusJSON(st))
	}
	printTable(e, st)
	return nil
}

// jsonStatus is status -json's object.
type jsonStatus struct {
	PID      int64 `json:"pid"`
	Size     int   `json:"size"`
	Stopping bool  `json:"stopping"`
	// Workers has one object per worker (a reload's replacement
	// included); EmptySlots the slots without one.
	Workers       []jsonWorker `json:"workers"`
	EmptySlots    []jsonWorker `json:"empty_slots"`
	ResourcesNote string       `json:"resources_note,omitempty"`
}

type jsonWorker struct {
	Slot          uint32    `json:"slot"`
	ID            uint64    `json:"id"`
	PID           int64     `json:"pid"`
	State         string    `json:"state"`
	Ready         bool      `json:"ready"`
	Replacement   bool      `json:"replacement"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Restarts      uint32    `json:"restarts"`
	LastExit      *jsonExit `json:"last_exit"`
	RSSBytes      uint64    `json:"rss_bytes"`
	CPUSeconds    float64   `json:"cpu_seconds"`
	Connections   uint64    `json:"connections"`
	MailboxDepth  uint32    `json:"mailbox_depth"`
}

type jsonExit struct {
	Worker uint64 `json:"worker"`
	Cause  string `json:"cause"`
	Code   int32  `json:"code"`
	Signal string `json:"signal,omitempty"`
}

func statusJSON(st *herdv1.StatusResponse) jsonStatus {
	out := jsonStatus{PID: st.GetPid(), Size: int(st.GetSize()), Stopping: st.GetStopping(),
		Workers: []jsonWorker{}, EmptySlots: []jsonWorker{}, ResourcesNote: st.GetResourcesNote()}
	for _, w := range st.GetWorkers() {
		jw := jsonWorker{
			Slot: w.GetSlot(), ID: w.GetId(), PID: w.GetPid(), State: w.GetState(), Ready: w.GetReady(),
			Replacement: w.GetReplacement(), UptimeSeconds: w.GetUptime().AsDuration().Seconds(),
			Restarts: w.GetRestarts(), RSSBytes: w.GetRssBytes(), CPUSeconds: w.GetCpuTime().AsDuration().Seconds(),
			Connections: w.GetConnections(), MailboxDepth: w.GetMailboxDepth(),
		}
		if x := w.GetLastExit(); x != nil {
			jw.LastExit = &jsonExit{Worker: x.GetWorker().GetId(), Cause: causeName(x.GetCause()), Code: x.GetCode(), Signal: x.GetSignal()}
		}
		if w.GetId() == 0 {
			out.EmptySlots = append(out.EmptySlots, jw)
		} else {
			out.Workers = append(out.Workers, jw)
		}
	}
	return out
}

// causeName is an exit cause without its prefix: "killed".
func causeName(c herdv1.ExitCause) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "EXIT_CAUSE_"))
}

// exitText is an exit for the table: "killed SIGKILL", "error 2", "clean".
func exitText(x *herdv1.ExitEvent) string {
	if x == nil {
		return "-"
	}
	s := causeName(x.GetCause())
	switch {
	case x.GetSignal() != "":
		s += " " + x.GetSignal()
	case x.GetCode() != 0:
		s += " " + strconv.Itoa(int(x.GetCode()))
	}
	return s
}

func printTable(e *env, st *herdv1.StatusResponse) {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tWORKER\tPID\tSTATE\tREADY\tUPTIME\tRESTARTS\tLAST EXIT\tRSS\tCPU\tCONNS\tMAILBOX")
	for _, w := range st.GetWorkers() {
		id, pid, ready, up, rss, cpu, conns, box := "-", "-", "-", "-", "-", "-", "-", "-"
		if w.GetId() != 0 {
			id, pid = strconv.FormatUint(w.GetId(), 10), strconv.FormatInt(w.GetPid(), 10)
			ready = "no"
			if w.GetReady() {
				ready = "yes"
			}
			up = shortDuration(w.GetUptime().AsDuration())
			if st.GetResourcesNote() == "" {
				rss = bytesText(w.GetRssBytes())
				cpu = fmt.Sprintf("%.2fs", w.GetCpuTime().AsDuration().Seconds())
			}
			conns = strconv.FormatUint(w.GetConnections(), 10)
			box = strconv.FormatUint(uint64(w.GetMailboxDepth()), 10)
		}
		state := w.GetState()
		if w.GetReplacement() {
			state += " (replacement)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", w.GetSlot(), id, pid, state, ready, up,
			w.GetRestarts(), exitText(w.GetLastExit()), rss, cpu, conns, box)
	}
	tw.Flush()
	if n := st.GetResourcesNote(); n != "" {
		fmt.Fprintln(e.stdout, "note:", n)
	}
	if st.GetStopping() {
		fmt.Fprintln(e.stdout, "the pool is stopping")
	}
}

// shortDuration is 3d4h, 2h5m, 4m10s or 12s.
func shortDuration(d time.Duration) string {
	d = d.Truncate(time.Second)
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// bytesText is 12.3MiB.
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%ciB", v, "KMGT"[i])
}

// reload reloads, printing each slot's progress from the event stream,
// which it follows on a second connection.
func (e *env) reload(ctx context.Context, argv []string) error {
	if _, err := e.subcommand("reload", "", 0, argv, nil); err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	w, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer w.Close()
	st, err := c.admin.Status(ctx, &herdv1.StatusRequest{})
	if err != nil {
		return e.callError("reload", err)
	}
	old := make(map[uint32]uint64) // slot -> worker being replaced
	for _, ws := range st.GetWorkers() {
		if ws.GetId() != 0 && !ws.GetReplacement() {
			old[ws.GetSlot()] = ws.GetId()
		}
	}
	upTo := make(chan uint64, 1)
	followed := make(chan error, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() { followed <- e.follow(wctx, w, st.GetLastEvent(), old, upTo) }()

	rctx, cancel := e.callCtx(ctx, 0)
	defer cancel()
	res, err := c.admin.Reload(rctx, &herdv1.ReloadRequest{})
	if err != nil {
		stopWatch()
		<-followed
		return e.callError("reload", err)
	}
	upTo <- res.GetLastEvent()
	if err := <-followed; err != nil {
		fmt.Fprintln(e.stderr, "herdctl: reload progress:", err)
	}
	if a := res.GetAborted(); a != nil {
		return fmt.Errorf("reload aborted at slot %d (replacement worker %d): %s; the workers not yet replaced keep serving: %s",
			a.GetSlot(), a.GetReplacement().GetId(), a.GetReason(), join(res.GetWorkers()))
	}
	fmt.Fprintf(e.stdout, "reloaded workers=%s\n", join(res.GetWorkers()))
	return nil
}

// follow prints a reload's progress per slot from the events after seq,
// until it has printed the event upTo says (once the reload returned).
func (e *env) follow(ctx context.Context, c *conn, seq uint64, old map[uint32]uint64, upTo <-chan uint64) error {
	end := uint64(0)
	done := false
	retiring := make(map[uint64]uint32) // worker -> slot
	for {
		if !done {
			select {
			case end = <-upTo:
				done = true
			default:
			}
		}
		if done && seq >= end {
			return nil
		}
		wait := time.Second // short polls, so that the end is seen soon
		res, err := c.admin.Watch(ctx, &herdv1.WatchRequest{After: seq, Wait: durationpb.New(wait)})
		if err != nil {
			return err
		}
		seq = res.GetLast()
		for _, ev := range res.GetEvents() {
			switch x := ev.GetEvent().(type) {
			case *herdv1.AdminEvent_ReloadStarted:
				fmt.Fprintf(e.stdout, "reload started: replacing workers %s, one slot at a time\n", join(x.ReloadStarted.GetWorkers()))
			case *herdv1.AdminEvent_Ready:
				slot, id := x.Ready.GetSlot(), x.Ready.GetWorker().GetId()
				if prev, ok := old[slot]; ok && prev != id {
					fmt.Fprintf(e.stdout, "slot %d: worker %d ready; disconnecting worker %d\n", slot, id, prev)
					retiring[prev] = slot
				} else {
					fmt.Fprintf(e.stdout, "slot %d: worker %d ready\n", slot, id)
				}
			case *herdv1.AdminEvent_Exit:
				id := x.Exit.GetWorker().GetId()
				if slot, ok := retiring[id]; ok {
					fmt.Fprintf(e.stdout, "slot %d: worker %d exited (%s)\n", slot, id, exitText(x.Exit))
				} else {
					fmt.Fprintf(e.stdout, "worker %d exited (%s)\n", id, exitText(x.Exit))
				}
			case *herdv1.AdminEvent_ReloadAborted:
				fmt.Fprintf(e.stdout, "slot %d: reload aborted: %s\n", x.ReloadAborted.GetSlot(), x.ReloadAborted.GetReason())
			}
		}
	}
}

// scale sets the number of workers.
func (e *env) scale(ctx context.Context, argv []string) error {
	args, err := e.subcommand("scale", "N", 1, argv, nil)
	if err != nil {
		return err
	}
	n, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		fmt.Fprintf(e.stderr, "herdctl: %q is not a number of workers\n", args[0])
		return errUsage
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := e.callCtx(ctx, 0)
	defer cancel()
	res, err := c.admin.Scale(cctx, &herdv1.ScaleRequest{Size: uint32(n)})
	if err != nil {
		return e.callError("scale", err)
	}
	fmt.Fprintf(e.stdout, "scaled from %d to %d workers\n", res.GetPrevious(), res.GetSize())
	return nil
}

// kill signals a worker.
func (e *env) kill(ctx context.Context, argv []string) error {
	var sig string
	args, err := e.subcommand("kill", "[-signal SIG] ID", 1, argv, func(fs *flag.FlagSet) {
		fs.StringVar(&sig, "signal", "SIGTERM", "the signal, by name (TERM, SIGKILL) or number")
	})
	if err != nil {
		return err
	}
	id, err := e.workerID(args[0])
	if err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := e.callCtx(ctx, defaultCallTimeout)
	defer cancel()
	res, err := c.admin.Kill(cctx, &herdv1.KillRequest{Worker: id, Signal: sig})
	if err != nil {
		return e.callError("kill", err)
	}
	fmt.Fprintf(e.stdout, "sent %s to worker %d (pid %d)\n", res.GetSignal(), res.GetWorker().GetId(), res.GetWorker().GetPid())
	return nil
}

// disconnect disconnects a worker gracefully and waits for its exit.
func (e *env) disconnect(ctx context.Context, argv []string) error {
	var drain time.Duration
	args, err := e.subcommand("disconnect", "[-drain D] ID", 1, argv, func(fs *flag.FlagSet) {
		fs.DurationVar(&drain, "drain", 0, "SIGKILL the worker if it has not exited after this long (default: the pool's graceful timeout)")
	})
	if err != nil {
		return err
	}
	id, err := e.workerID(args[0])
	if err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	req := &herdv1.AdminServiceDisconnectRequest{Worker: id}
	if drain > 0 {
		req.Timeout = durationpb.New(drain)
	}
	cctx, cancel := e.callCtx(ctx, 0)
	defer cancel()
	res, err := c.admin.Disconnect(cctx, req)
	if err != nil {
		return e.callError("disconnect", err)
	}
	fmt.Fprintf(e.stdout, "worker %d exited (%s)\n", id, exitText(res.GetExit()))
	return nil
}

// recycle replaces a worker by the rolling path.
func (e *env) recycle(ctx context.Context, argv []string) error {
	args, err := e.subcommand("recycle", "ID", 1, argv, nil)
	if err != nil {
		return err
	}
	id, err := e.workerID(args[0])
	if err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := e.callCtx(ctx, 0)
	defer cancel()
	res, err := c.admin.Recycle(cctx, &herdv1.AdminServiceRecycleRequest{Worker: id})
	if err != nil {
		return e.callError("recycle", err)
	}
	fmt.Fprintf(e.stdout, "slot %d: worker %d replaced by worker %d (pid %d)\n", res.GetSlot(), id, res.GetReplacement().GetId(), res.GetReplacement().GetPid())
	return nil
}

// watch prints events as logfmt lines until ctx ends (Ctrl-C) or the
// primary goes away.
func (e *env) watch(ctx context.Context, argv []string) error {
	var all bool
	if _, err := e.subcommand("watch", "[-all]", 0, argv, func(fs *flag.FlagSet) {
		fs.BoolVar(&all, "all", false, "start with the events the primary still keeps")
	}); err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var seq uint64
	if !all {
		res, err := c.admin.Watch(ctx, &herdv1.WatchRequest{FromNow: true})
		if err != nil {
			return e.callError("watch", err)
		}
		seq = res.GetLast()
	}
	for {
		res, err := c.admin.Watch(ctx, &herdv1.WatchRequest{After: seq})
		if ctx.Err() != nil {
			return nil // Ctrl-C
		}
		if err != nil {
			return e.callError("watch", err)
		}
		if n := res.GetMissed(); n > 0 {
			fmt.Fprintf(e.stdout, "event=missed count=%d\n", n)
		}
		for _, ev := range res.GetEvents() {
			fmt.Fprintln(e.stdout, logfmt(ev))
		}
		seq = res.GetLast()
	}
}
