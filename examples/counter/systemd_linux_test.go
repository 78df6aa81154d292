//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// unitFile is a systemd unit file: its sections' assignments, in order
// (a key may repeat).
type unitFile map[string][][2]string

// readUnit parses a unit file as systemd.syntax(7) describes it, without
// line continuations (the examples use none).
func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("%s:%d: not an assignment in a section: %q", path, i+1, line)
			}
			u[section] = append(u[section], [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	return u
}

// get returns the last value of key in section ("" when absent).
func (u unitFile) get(section, key string) string {
	v := ""
	for _, kv := range u[section] {
		if kv[0] == key {
			v = kv[1]
		}
	}
	return v
}

// unitDuration parses a systemd time span of the forms the examples use
// ("40s", "2min", "500ms", a bare number of seconds).
func unitDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(strings.Replace(s, "min", "m", 1))
	if err != nil {
		t.Fatalf("time span %q: %v", s, err)
	}
	return d
}

// TestSystemdUnits checks examples/systemd: the service runs the example
// with flags it accepts, as Type=notify-reload with SIGHUP (the pool's
// reload), a watchdog, only the primary signalled on stop (KillMode=mixed)
// and a stop timeout longer than herd's graceful stop; the socket listens
// on the service's -addr, one service for all connections.
func TestSystemdUnits(t *testing.T) {
	svc := readUnit(t, "../systemd/counter.service")
	sock := readUnit(t, "../systemd/counter.socket")

	exec := strings.Fields(svc.get("Service", "ExecStart"))
	if len(exec) == 0 || filepath.Base(exec[0]) != "counter" {
		t.Fatalf("ExecStart=%q does not run the counter example", svc.get("Service", "ExecStart"))
	}
	o, err := parse(exec[1:], io.Discard)
	if err != nil {
		t.Fatalf("ExecStart's flags: %v", err)
	}
	if ls := sock.get("Socket", "ListenStream"); ls != o.addr {
		t.Errorf("counter.socket ListenStream=%s, the service's -addr %s", ls, o.addr)
	}
	if a := sock.get("Socket", "Accept"); a != "no" && a != "false" {
		t.Errorf("counter.socket Accept=%q: one service instance must get the listening socket", a)
	}
	for _, want := range [][3]string{
		{"Service", "Type", "notify-reload"},
		{"Service", "ReloadSignal", "SIGHUP"},
		{"Service", "NotifyAccess", "main"},
		{"Service", "KillMode", "mixed"},
		{"Service", "KillSignal", "SIGTERM"},
		{"Service", "Restart", "on-failure"},
	} {
		if got := svc.get(want[0], want[1]); got != want[2] {
			t.Errorf("counter.service %s=%q, want %q", want[1], got, want[2])
		}
	}
	if !slices.Contains(strings.Fields(svc.get("Unit", "Requires")), "counter.socket") ||
		!slices.Contains(strings.Fields(svc.get("Unit", "After")), "counter.socket") {
		t.Error("counter.service does not require and follow counter.socket")
	}
	stop := unitDuration(t, svc.get("Service", "TimeoutStopSec"))
	if herd := o.drain + runtime.DefaultGracefulTimeout + runtime.DefaultTermTimeout; stop <= herd {
		t.Errorf("TimeoutStopSec=%v, not above herd's graceful stop (%v)", stop, herd)
	}
	if wd := unitDuration(t, svc.get("Service", "WatchdogSec")); wd < 2*time.Second {
		t.Errorf("WatchdogSec=%v: too short to ping every half of it", wd)
	}
}

// TestSocketActivation starts the example as systemd would start
// counter.service from counter.socket, with systemd-socket-activate: the
// primary is given the listening socket (LISTEN_FDS=1) and its workers
// serve it instead of binding -addr (an address the test holds busy), and
// no worker inherits the socket or the LISTEN_* variables.
func TestSocketActivation(t *testing.T) {
	if _, err := exec.LookPath("systemd-socket-activate"); err != nil {
		t.Skip("systemd-socket-activate not installed (Debian package systemd)")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close() // systemd-socket-activate binds it again
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	herdtest.CheckLeaks(t)
	// systemd-socket-activate binds the socket, waits for a connection,
	// then execs the example in its own process with the socket as
	// descriptor 3 and only the environment it is given (the role too).
	e := herdtest.Start(t, "counter", herdtest.WithProgram("systemd-socket-activate"),
		herdtest.WithArgs("-l", addr, "-E", herdtest.EnvRole+"=counter",
			exe, "-addr", busy.Addr().String(), "-workers", "2"),
		herdtest.WithProcessGroup(), herdtest.WithWorkerPIDs(onlinePID))
	e.WaitStderr("Listening on ")

	// The first connection starts the example; it is answered once a
	// worker serves the socket.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: herdtest.DefaultTimeout}
	if body := get(t, client, "http://"+addr+"/"); !strings.HasPrefix(body, "hello from worker ") {
		t.Errorf("GET / = %q", body)
	}
	if line := e.WaitLine("listening addr="); line != "listening addr="+addr {
		t.Errorf("%q, want the activated socket's address %s", line, addr)
	}
	for range 10 {
		if body := get(t, client, "http://"+addr+"/"); !strings.HasPrefix(body, "hello from worker ") {
			t.Errorf("GET / = %q", body)
		}
	}

	// The primary (systemd-socket-activate's process, after its exec)
	// holds the socket as descriptor 3; its workers have no descriptor of
	// it and no LISTEN_* variable.
	primary := e.PID()
	sockLink, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", primary))
	if err != nil || !strings.HasPrefix(sockLink, "socket:[") {
		t.Fatalf("the primary's descriptor 3: %q, %v", sockLink, err)
	}
	pids := onlinePIDs(e)
	if len(pids) != 2 {
		t.Fatalf("online lines %q", e.Lines())
	}
	for _, pid := range pids {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); l == sockLink {
				t.Errorf("worker %d inherited the activated socket as descriptor %s", pid, fd.Name())
			}
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if strings.HasPrefix(kv, "LISTEN_") {
				t.Errorf("worker %d inherited %s", pid, kv)
			}
		}
	}

	e.Signal(syscall.SIGTERM)
	e.WaitLine("total=")
	e.WaitExit(0)
}
