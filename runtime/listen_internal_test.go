//go:build unix

package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSystemdFDByName(t *testing.T) {
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	t.Setenv("LISTEN_FDS", "3")
	t.Setenv("LISTEN_FDNAMES", "http:https:metrics")
	for name, want := range map[string]int{"http": 3, "https": 4, "metrics": 5} {
		if fd, err := systemdFD(name); err != nil || fd != want {
			t.Errorf("systemdFD(%q) = %d, %v; want %d", name, fd, err, want)
		}
	}
	if _, err := systemdFD("grpc"); err == nil {
		t.Error("unknown name found")
	}
	// Taken over: the variables are gone, the names stay.
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%s still in the environment", k, v)
		}
	}
	if fd, err := systemdFD("https"); err != nil || fd != 4 {
		t.Errorf("after the take-over, systemdFD(https) = %d, %v", fd, err)
	}
	activation.fds, activation.names = nil, nil
	t.Setenv("LISTEN_PID", "1")
	t.Setenv("LISTEN_FDS", "3")
	t.Setenv("LISTEN_FDNAMES", "http:https:metrics")
	if _, err := systemdFD("http"); err == nil {
		t.Error("descriptors of another process accepted")
	}
	if os.Getenv("LISTEN_FDS") != "3" {
		t.Error("the variables of another process were removed")
	}
}

func TestShortUnixPath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	long := filepath.Join(dir, strings.Repeat("x", 50), "s.sock")
	if got := shortUnixPath(long); got != filepath.Join(strings.Repeat("x", 50), "s.sock") {
		t.Errorf("shortUnixPath(%s) = %s", long, got)
	}
	if got := shortUnixPath("/s.sock"); got != "/s.sock" {
		t.Errorf("shortUnixPath(/s.sock) = %s", got)
	}
	if got := shortUnixPath("@abstract"); got != "@abstract" {
		t.Errorf("abstract: %s", got)
	}
	abs, err := absUnixPath("a.sock")
	if err != nil || abs != filepath.Join(dir, "a.sock") {
		t.Errorf("absUnixPath = %s, %v", abs, err)
	}
}

func TestParseSchedulingPolicy(t *testing.T) {
	for s, want := range map[string]SchedulingPolicy{"": SchedDefault, "rr": SchedRoundRobin, "none": SchedShared,
		"shared": SchedShared, "REUSEPORT": SchedReusePort} {
		if got, err := ParseSchedulingPolicy(s); err != nil || got != want {
			t.Errorf("ParseSchedulingPolicy(%q) = %v, %v", s, got, err)
		}
		if want != SchedDefault && want.String() != strings.ToLower(s) && s != "none" {
			t.Errorf("%v.String() = %s", want, want.String())
		}
	}
	if _, err := ParseSchedulingPolicy("random"); err == nil {
		t.Error("unknown policy accepted")
	}
}
