package main

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// logfmt quotes values that hold spaces, quotes, '=' or control
// characters, so a worker's stderr in an event cannot forge fields or
// lines.
func TestLogfmt(t *testing.T) {
	ev := &herdv1.AdminEvent{Seq: 7, Time: timestamppb.New(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)),
		Event: &herdv1.AdminEvent_Exit{Exit: &herdv1.ExitEvent{
			Worker: &herdv1.Worker{Id: 3, Pid: 99}, Code: 2, Cause: herdv1.ExitCause_EXIT_CAUSE_ERROR,
			StderrTail: "panic: x=1 \"boom\"\nevent=forged",
		}}}
	want := `time=2026-11-30T10:00:00Z seq=7 event=exit worker=3 pid=99 code=2 signal="" cause=error after_disconnect=false stderr_tail="panic: x=1 \"boom\"\nevent=forged"`
	if got := logfmt(ev); got != want {
		t.Errorf("logfmt:\n got %s\nwant %s", got, want)
	}
}

func TestFormats(t *testing.T) {
	for d, want := range map[time.Duration]string{
		12 * time.Second: "12s", 250 * time.Second: "4m10s", 2*time.Hour + 5*time.Minute: "2h5m", 76 * time.Hour: "3d4h",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q; want %q", d, got, want)
		}
	}
	for n, want := range map[uint64]string{512: "512B", 10 << 20: "10.0MiB", 1536: "1.5KiB", 3 << 30: "3.0GiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q; want %q", n, got, want)
		}
	}
	if got := exitText(&herdv1.ExitEvent{Cause: herdv1.ExitCause_EXIT_CAUSE_KILLED, Signal: "SIGKILL", Code: -1}); got != "killed SIGKILL" {
		t.Errorf("exitText = %q", got)
	}
}
