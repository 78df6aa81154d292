//go:build unix

package runtime_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime"
)

// refusals names the primary's refusals of a worker's Listen, for errName.
var refusals = map[string]error{
	"NOTSHAREABLE": runtime.ErrFDNotShareable,
	"PATHREFUSED":  runtime.ErrUnixPathNotAllowed,
	"MODEREFUSED":  runtime.ErrUnixModeNotAllowed,
	"TOOMANY":      runtime.ErrTooManyListeners,
}

// untrustedCluster is a cluster of ctl workers that, when the tests run as
// root (as in CI), run as nobody in a directory of their own, as an
// unprivileged worker under a root primary would. It returns the workers'
// directory.
func untrustedCluster(t *testing.T, opts ...runtime.PrimaryOption) (*listenCluster, string) {
	t.Helper()
	if os.Getuid() != 0 {
		dir := t.TempDir()
		return newListenCluster(t, append([]runtime.PrimaryOption{runtime.WithDir(dir)}, opts...)...), dir
	}
	dir, bin := publicTestBinary(t)
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	base := []runtime.PrimaryOption{runtime.WithExec(bin), runtime.WithDir(work), runtime.WithCredential(nobody, nobody)}
	return newListenCluster(t, append(base, opts...)...), work
}

// openFDs lists this process's open descriptors.
func openFDs(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	var fds []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			fds = append(fds, n)
		}
	}
	slices.Sort(fds)
	return fds
}

// fileOf returns a duplicate of c's descriptor as a file.
func fileOf(t *testing.T, c interface{ File() (*os.File, error) }) *os.File {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestListenFDShareableOnly is issue 9's finding 1: a worker names
// descriptors of the primary with WithListenFD. Only the descriptors the
// primary declared shareable, and only when they are listening sockets of
// the network the worker asked for, may be shared; every other descriptor
// of the primary (its private listener, the links to other workers, its
// standard files) is refused with ErrFDNotShareable and an error event
// naming the worker.
func TestListenFDShareableOnly(t *testing.T) {
	// No systemd descriptors in this test (another may have left some).
	runtime.ForgetActivation()
	admin, err := net.Listen("tcp", "127.0.0.1:0") // the primary's own, not shared
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	dns, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.CloseOnExec(pair[0])
	unix.CloseOnExec(pair[1])
	conn := os.NewFile(uintptr(pair[0]), "pair0") // connected, not listening
	defer conn.Close()
	defer unix.Close(pair[1])
	adminFD := int(fileOf(t, admin.(*net.TCPListener)).Fd())
	webFD := int(fileOf(t, web.(*net.TCPListener)).Fd())
	dnsFD := int(fileOf(t, dns.(*net.UDPConn)).Fd())
	connFD := int(conn.Fd())

	c, _ := untrustedCluster(t, runtime.WithShareableFDs(webFD, dnsFD, connFD))
	ws := c.start(2) // the primary now also holds its ends of two links
	before := openFDs(t)
	attacker := ws[0]

	// Every descriptor the primary has open, and every number up to 32,
	// except the two it shares on purpose.
	targets := slices.Clone(before)
	for n := range 33 {
		targets = append(targets, n)
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)
	var taken []int
	refused := 0
	for _, n := range targets {
		if n == webFD || n == dnsFD {
			continue
		}
		for _, pol := range []string{"shared", "rr"} {
			if pol == "rr" && n != adminFD && n != connFD {
				continue
			}
			got := c.do(attacker, fmt.Sprintf("listen tcp fd%d fd=%d policy=%s", n, n, pol))
			switch {
			case strings.HasPrefix(got, "ok"):
				if slices.Contains(before, n) && !slices.Contains(taken, n) {
					taken = append(taken, n)
				}
			case strings.HasPrefix(got, "err NOTSHAREABLE"):
				refused++
			default:
				t.Errorf("listen on the primary's descriptor %d (%s): %s; want err NOTSHAREABLE", n, pol, got)
			}
		}
	}
	after := openFDs(t)
	t.Logf("the worker obtained %d of the %d descriptors the primary had open %v; %d listens refused; the primary had %d descriptors open after the attack",
		len(taken), len(before), taken, refused, len(after))
	if len(taken) != 0 {
		t.Errorf("the worker obtained the primary's descriptors %v", taken)
	}
	// Declared or not, a descriptor that is not a listening socket is never
	// shared: the primary's ends of the links to the workers above all
	// (its unix stream sockets; other descriptors come and go as handles
	// are made, so the numbers could name something else by now).
	c.p.Setup(runtime.WithShareableFDs(before...))
	links := 0
	for _, n := range before {
		if !isUnixStream(n) {
			continue
		}
		links++
		if got := c.do(attacker, fmt.Sprintf("listen unix declared%d fd=%d policy=shared", n, n)); !strings.HasPrefix(got, "err NOTSHAREABLE") {
			t.Errorf("declared unix stream socket %d: %s; want err NOTSHAREABLE", n, got)
		}
	}
	if links < 4 { // the pair, and the links to two workers
		t.Errorf("only %d unix stream sockets among the primary's descriptors %v", links, before)
	}
	// A declared listening socket is shared.
	c.listen(attacker, fmt.Sprintf("listen tcp admin fd=%d policy=shared", adminFD))
	// Wrong network for a shareable socket.
	for _, cmd := range []string{
		fmt.Sprintf("listen unix web fd=%d", webFD),  // a TCP socket as unix
		fmt.Sprintf("listen tcp6 web fd=%d", webFD),  // IPv4 as tcp6
		fmt.Sprintf("udp udp web fd=%d", webFD),      // a stream socket as UDP
		fmt.Sprintf("listen tcp dns fd=%d", dnsFD),   // a datagram socket as TCP
		fmt.Sprintf("listen tcp conn fd=%d", connFD), // declared, but not listening
		"listen tcp named fdname=web policy=shared",  // no systemd descriptors
	} {
		if got := c.do(attacker, cmd); !strings.HasPrefix(got, "err NOTSHAREABLE") {
			t.Errorf("%s: %s; want err NOTSHAREABLE", cmd, got)
		}
	}
	if got := c.rec.waitFor(fmt.Sprintf("error %d permission_denied", attacker.ID())); !strings.Contains(got, "descriptor") {
		t.Errorf("error event %q does not say which descriptor", got)
	}
	// The declared sockets are shared, under both policies.
	c.listen(attacker, fmt.Sprintf("listen tcp web fd=%d policy=shared", webFD))
	c.listen(ws[1], fmt.Sprintf("listen tcp web fd=%d policy=rr", webFD))
	if seen := collect(t, "tcp", web.Addr().String(), 4); seen["w1"]+seen["w2"] != 4 {
		t.Errorf("answers %v", seen)
	}
	if got := c.do(attacker, fmt.Sprintf("udp udp dns fd=%d", dnsFD)); !strings.HasPrefix(got, "ok") {
		t.Errorf("declared UDP socket: %s", got)
	}
	// The other worker was not touched through its link.
	if got := c.do(ws[1], "stat"); !strings.HasPrefix(got, "fds=") || !ws[1].IsConnected() {
		t.Errorf("the other worker: %s, connected %t", got, ws[1].IsConnected())
	}
	// The primary's private listener still works and is still its own.
	go func() {
		if c, err := admin.Accept(); err == nil {
			c.Close()
		}
	}()
	if cn, err := net.Dial("tcp", admin.Addr().String()); err != nil {
		t.Errorf("the primary's listener: %v", err)
	} else {
		cn.Close()
	}
}

// TestListenUnixConfined is issue 9's finding 2: the primary creates unix
// sockets for a worker only in the allowed directories (by default the
// worker's working directory and below), with mode 0600 unless the worker
// asks for a mode within the primary's limit, and follows no symbolic link
// a worker planted. Run as root, the worker runs as nobody, as the confused
// deputy attack needs.
func TestListenUnixConfined(t *testing.T) {
	outside := t.TempDir() // the primary's, not the worker's
	c, work := untrustedCluster(t)
	w := c.start(1)[0]
	absent := func(name string) {
		t.Helper()
		if _, err := os.Lstat(filepath.Join(outside, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was created outside the worker's directory (%v)", name, err)
		}
	}
	// A path of the worker's choosing, outside its directory.
	if got := c.do(w, "listen unix "+filepath.Join(outside, "evil.sock")+" mode=0777"); !strings.HasPrefix(got, "err PATHREFUSED") {
		t.Errorf("socket outside the worker's directory: %s", got)
	}
	absent("evil.sock")
	if got := c.rec.waitFor(fmt.Sprintf("error %d permission_denied", w.ID())); !strings.Contains(got, "evil.sock") {
		t.Errorf("error event %q does not name the path", got)
	}
	if got := c.do(w, "listen unix ../up.sock"); !strings.HasPrefix(got, "err PATHREFUSED") {
		t.Errorf("socket above the worker's directory: %s", got)
	}
	// A directory on the way that is a symbolic link the worker planted.
	if got := c.do(w, "symlink "+outside+" link"); got != "ok" {
		t.Fatal(got)
	}
	if got := c.do(w, "listen unix link/evil.sock"); !strings.HasPrefix(got, "err PATHREFUSED") {
		t.Errorf("socket through a planted directory link: %s", got)
	}
	absent("evil.sock")
	// The socket's own name a symbolic link: bind does not follow it.
	if got := c.do(w, "symlink "+filepath.Join(outside, "final.sock")+" final.sock"); got != "ok" {
		t.Fatal(got)
	}
	if got := c.do(w, "listen unix final.sock"); !strings.HasPrefix(got, "err EADDRINUSE") {
		t.Errorf("socket on a planted link: %s", got)
	}
	absent("final.sock")
	// A mode beyond the limit.
	if got := c.do(w, "listen unix wide.sock mode=0777"); !strings.HasPrefix(got, "err MODEREFUSED") {
		t.Errorf("mode 0777: %s", got)
	}
	if _, err := os.Lstat(filepath.Join(work, "wide.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused socket file exists: %v", err)
	}
	// What is allowed: the worker's directory and below, mode 0600 by
	// default, or a mode within the limit.
	if got := c.do(w, "mkdir sub"); got != "ok" {
		t.Fatal(got)
	}
	for _, tc := range []struct{ cmd, file string }{
		{"listen unix s.sock", "s.sock"},
		{"listen unix sub/s.sock mode=0600", "sub/s.sock"},
		{"listen unix r.sock mode=0400 policy=shared", "r.sock"},
	} {
		addr, _ := c.listen(w, tc.cmd)
		path := filepath.Join(work, tc.file)
		if addr != path {
			t.Errorf("%s: address %s, want %s", tc.cmd, addr, path)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if strings.Contains(tc.cmd, "0400") {
			want = 0o400
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != want || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			t.Errorf("%s: %v owned by %d, want a socket %v owned by %d", tc.cmd, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, want, os.Getuid())
		}
		if want&0o200 != 0 {
			if got := mustGet(t, "unix", path); got != "w1" {
				t.Errorf("%s: answered by %s", tc.cmd, got)
			}
		}
	}
	// The files go when the worker closes its listeners.
	for i := range 3 {
		if got := c.do(w, fmt.Sprintf("close %d", i)); got != "ok" {
			t.Fatal(got)
		}
	}
	for _, f := range []string{"s.sock", "sub/s.sock", "r.sock"} {
		if _, err := os.Lstat(filepath.Join(work, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed: %v", f, err)
		}
	}
	// The planted links are the worker's: still there, not removed.
	if _, err := os.Lstat(filepath.Join(work, "final.sock")); err != nil {
		t.Errorf("the worker's link: %v", err)
	}
}

// TestListenUnixAllowedByPrimary: the primary widens where and with which
// mode workers may have unix sockets: WithUnixSocketDirs and
// WithUnixModeLimit.
func TestListenUnixAllowedByPrimary(t *testing.T) {
	allowed := t.TempDir()
	if err := os.Chmod(allowed, 0o755); err != nil {
		t.Fatal(err)
	}
	c, _ := untrustedCluster(t, runtime.WithUnixSocketDirs(allowed), runtime.WithUnixModeLimit(0o666))
	w := c.start(1)[0]
	path := filepath.Join(allowed, "public.sock")
	c.listen(w, "listen unix "+path+" mode=0666")
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket %v, %v; want mode 0666", fi, err)
	}
	if got := mustGet(t, "unix", path); got != "w1" {
		t.Errorf("answered by %s", got)
	}
	// The worker's own directory is no longer allowed: only what was given.
	if got := c.do(w, "listen unix own.sock"); !strings.HasPrefix(got, "err PATHREFUSED") {
		t.Errorf("socket in the worker's directory: %s", got)
	}
	if got := c.do(w, "listen unix "+filepath.Join(allowed, "x.sock")+" mode=0777"); !strings.HasPrefix(got, "err MODEREFUSED") {
		t.Errorf("mode 0777 with limit 0666: %s", got)
	}
	c.do(w, "close 0")
}

// isUnixStream says whether this process's descriptor fd is a unix stream
// socket, such as a link.
func isUnixStream(fd int) bool {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_STREAM {
		return false
	}
	sa, err := unix.Getsockname(fd)
	_, ok := sa.(*unix.SockaddrUnix)
	return err == nil && ok
}

// TestListenersBoundedPerWorker: one worker cannot make the primary bind
// sockets without limit (each ":0" listen of a worker is a new port, a new
// descriptor of the primary): beyond WithMaxListeners (default 256) its
// Listen fails with ErrTooManyListeners and an error event; closing one
// makes room again.
func TestListenersBoundedPerWorker(t *testing.T) {
	c := newListenCluster(t)
	ws := c.start(2)
	before := len(openFDs(t))
	const attempts = 300
	ok, refused := 0, 0
	for range attempts {
		got := c.do(ws[0], "listen tcp 127.0.0.1:0 policy=shared")
		switch {
		case strings.HasPrefix(got, "ok"):
			ok++
		case strings.HasPrefix(got, "err TOOMANY"):
			refused++
		default:
			t.Fatalf("listen: %s", got)
		}
	}
	t.Logf("%d listens of one worker: %d served, %d refused; the primary's descriptors went from %d to %d",
		attempts, ok, refused, before, len(openFDs(t)))
	if ok != 256 || refused != attempts-256 {
		t.Errorf("%d served, %d refused; want 256 and %d", ok, refused, attempts-256)
	}
	if got := c.rec.waitFor(fmt.Sprintf("error %d resource_exhausted", ws[0].ID())); !strings.Contains(got, "too many listeners") {
		t.Errorf("error event %q", got)
	}
	// The bound is per worker, and closing makes room.
	c.listen(ws[1], "listen tcp 127.0.0.1:0")
	if got := c.do(ws[0], "close 0"); got != "ok" {
		t.Fatal(got)
	}
	c.listen(ws[0], "listen tcp 127.0.0.1:0")
	if got := c.do(ws[0], "listen tcp 127.0.0.1:0"); !strings.HasPrefix(got, "err TOOMANY") {
		t.Errorf("listen beyond the bound again: %s", got)
	}
}

func TestListenersBoundSetting(t *testing.T) {
	c := newListenCluster(t, runtime.WithMaxListeners(3))
	w := c.start(1)[0]
	for range 3 {
		c.listen(w, "udp udp 127.0.0.1:0")
	}
	if got := c.do(w, "udp udp 127.0.0.1:0"); !strings.HasPrefix(got, "err TOOMANY") {
		t.Errorf("fourth listener with WithMaxListeners(3): %s", got)
	}
}
