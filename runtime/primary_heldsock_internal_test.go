//go:build linux

package runtime

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
)

// polledFDs returns the descriptors registered with this process's epoll
// instances (the Go netpoller's), from /proc/self/fdinfo.
func polledFDs(t *testing.T) map[int]bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	polled := map[int]bool{}
	for _, e := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || target != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "tfd:" {
				if n, err := strconv.Atoi(f[1]); err == nil {
					polled[n] = true
				}
			}
		}
	}
	return polled
}

// TestSharedHandleSocketNotPolled: the primary's copy of a shared socket
// is out of its netpoller, so connections arriving there do not wake it;
// a duplicate handed to a worker still accepts.
func TestSharedHandleSocketNotPolled(t *testing.T) {
	base := herdtest.Take()
	defer herdtest.Check(t, base, 10*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var lfd int
	if err := controlFD(ln.(syscall.Conn), func(fd int) error { lfd = fd; return nil }); err != nil {
		t.Fatal(err)
	}
	if !polledFDs(t)[lfd] {
		t.Fatalf("a net.Listener's descriptor %d is not among the polled ones: the check cannot see registrations", lfd)
	}
	addr := ln.Addr().String()
	h, err := newSharedHandle(handleBase{network: "tcp", address: addr}, ln.(syscall.Conn), ln)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	if polledFDs(t)[h.sock.fd] {
		t.Fatalf("the shared handle's descriptor %d is registered with the netpoller", h.sock.fd)
	}
	// A worker's duplicate is the same, non-blocking socket: it accepts.
	fd, err := dupSocket(h.sock)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "worker-copy")
	wl, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer wl.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := wl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
	// The held copy accepts without waiting (acceptQueued): EAGAIN, not a
	// block, once the queue is empty.
	if got := acceptQueued(h.sock); len(got) != 0 {
		closeFiles(got)
		t.Fatalf("acceptQueued on an empty queue took %d", len(got))
	}
}
