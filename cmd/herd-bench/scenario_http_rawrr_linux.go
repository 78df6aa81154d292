package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime"
)

// The raw hand-off baseline (system raw_rr of http_close): the floor of any
// design in which one process accepts every connection and passes it to
// worker processes, as herd's rr policy (and Node's) does. A primary
// accepts with accept4 until EAGAIN, passes each batch round robin to
// HERD_BENCH_WORKERS children over bare SOCK_SEQPACKET socketpairs (one
// sendmsg of SCM_RIGHTS per child per batch) and closes its descriptors;
// each child receives them (one recvmsg per batch) and serves them with the
// same net/http server as every Go system, each descriptor wrapped as an
// *os.File (no dup, as herd's workers do). There is nothing else: no
// messages about the connections, no acknowledgement or credit, no load
// balancing beyond the round robin, no copy kept for a worker's death, no
// limits. herd's rr against raw_rr is herd's own cost; raw_rr against
// single is the cost of the extra process hop itself.

// rawRRBatch bounds the descriptors one accept batch takes (and so one
// sendmsg carries), as herd's primary does.
const rawRRBatch = 64

// needsRawRR reports that the raw hand-off runs here.
func needsRawRR(*config) string { return "" }

// rawRRPrimary is the raw hand-off's accepting process.
func rawRRPrimary() error {
	n, err := roleInt(envWorkers)
	if err != nil {
		return err
	}
	ln, port, err := rawListen()
	if err != nil {
		return err
	}
	defer ln.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// The children run with the GOMAXPROCS herd gives a pool of n workers
	// (runtime.WorkerGOMAXPROCS), so that the two differ only in the
	// hand-off.
	procs := runtime.WorkerGOMAXPROCS(n, runtime.DefaultPoolSize())
	var (
		links []int
		cmds  []*exec.Cmd
	)
	defer func() {
		for _, fd := range links {
			unix.Close(fd)
		}
		for _, cmd := range cmds {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	for range n {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socketpair: %w", err)
		}
		links = append(links, fds[0])
		theirs := os.NewFile(uintptr(fds[1]), "raw-rr-child")
		cmd := exec.Command(exe)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, envRole+"=") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, envRole+"="+roleRawRRWorker, fmt.Sprintf("GOMAXPROCS=%d", procs))
		cmd.ExtraFiles = []*os.File{theirs} // descriptor 3
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		err = cmd.Start()
		theirs.Close()
		if err != nil {
			return fmt.Errorf("start raw hand-off child: %w", err)
		}
		cmds = append(cmds, cmd)
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var accepted atomic.Int64
	errc := make(chan error, 1)
	go func() { errc <- rawRRAccept(rc, links, &accepted) }()

	stop := stdinClosed()
	emit(lineReady, map[string]float64{"port": float64(port)})
	pids := []int{os.Getpid()}
	for _, cmd := range cmds {
		pids = append(pids, cmd.Process.Pid)
	}
	servers := startServerCPU(pids...)
	cpu0, cpuOK := selfCPU()
	select {
	case err := <-errc:
		return fmt.Errorf("accept: %w", err)
	case <-stop:
	}
	cpu1, _ := selfCPU()
	servers.stop()
	conns := float64(accepted.Load())
	figs := map[string]float64{"connections": conns}
	if cpuOK && conns > 0 {
		figs["http_close_raw_rr_primary_cpu_ms_per_1k_conns"] = float64((cpu1 - cpu0).Microseconds()) / 1e3 / (conns / 1000)
	}
	servers.report(figs, conns)
	emit(lineResult, figs)
	return nil
}

// rawListen listens on 127.0.0.1:0 with a non-blocking socket of its own,
// as an *os.File: net.TCPListener's SyscallConn cannot wait for
// readability (its Read is EINVAL).
func rawListen() (*os.File, int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("listen: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("getsockname: %w", err)
	}
	return os.NewFile(uintptr(fd), "raw-rr-listener"), sa.(*unix.SockaddrInet4).Port, nil
}

// rawRRAccept accepts until the listener fails, handing each batch off.
func rawRRAccept(rc syscall.RawConn, links []int, accepted *atomic.Int64) error {
	var (
		next   int
		batch  [rawRRBatch]int
		per    = make([][]int, len(links))
		oneB   = []byte{0}
		failed error
	)
	err := rc.Read(func(lfd uintptr) bool {
		k := 0
		for k < len(batch) {
			fd, _, err := unix.Accept4(int(lfd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err != nil {
				if err != unix.EAGAIN {
					failed = fmt.Errorf("accept4: %w", err)
					return true
				}
				break
			}
			batch[k] = fd
			k++
		}
		if k == 0 {
			return false // wait for the listener to be readable
		}
		accepted.Add(int64(k))
		for i := range per {
			per[i] = per[i][:0]
		}
		for _, fd := range batch[:k] {
			per[next] = append(per[next], fd)
			next = (next + 1) % len(links)
		}
		for i, fds := range per {
			if len(fds) == 0 {
				continue
			}
			// The socketpair is blocking on this side: a child that
			// cannot keep up stalls the accepting thread, which a
			// baseline may do.
			if err := unix.Sendmsg(links[i], oneB, unix.UnixRights(fds...), nil, 0); err != nil {
				failed = fmt.Errorf("sendmsg: %w", err)
			}
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
		// Accept again at once: the batch may have stopped at its bound.
		return failed != nil
	})
	if failed != nil {
		return failed
	}
	return err
}

// rawRRWorker is a raw hand-off child: it serves the descriptors that
// arrive on descriptor 3 until that ends.
func rawRRWorker() error {
	// Non-blocking before os.NewFile, which then polls it.
	if err := unix.SetNonblock(3, true); err != nil {
		return err
	}
	link := os.NewFile(3, "raw-rr-link")
	rc, err := link.SyscallConn()
	if err != nil {
		return err
	}
	ln := &chanListener{conns: make(chan net.Conn, 4*rawRRBatch), done: make(chan struct{})}
	go func() {
		err := rawRRReceive(rc, ln)
		ln.fail(err)
	}()
	srv := &http.Server{Handler: helloHandler{}, ReadHeaderTimeout: 10 * time.Second}
	err = srv.Serve(ln)
	if errors.Is(err, errLinkEnded) {
		return nil
	}
	return err
}

// errLinkEnded is the end of a raw hand-off child's link: its primary is
// gone.
var errLinkEnded = errors.New("raw hand-off link ended")

// rawRRReceive reads batches of descriptors from rc into ln until the link
// ends.
func rawRRReceive(rc syscall.RawConn, ln *chanListener) error {
	var (
		buf    [16]byte
		oob    = make([]byte, unix.CmsgSpace(rawRRBatch*4))
		failed error
	)
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, _, err := unix.Recvmsg(int(fd), buf[:], oob, unix.MSG_CMSG_CLOEXEC)
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return false
			}
			if err != nil {
				failed = fmt.Errorf("recvmsg: %w", err)
				return true
			}
			if n == 0 && oobn == 0 {
				failed = errLinkEnded
				return true
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				failed = err
				return true
			}
			for _, m := range msgs {
				fds, err := unix.ParseUnixRights(&m)
				if err != nil {
					continue
				}
				for _, cfd := range fds {
					ln.conns <- &fileConn{File: os.NewFile(uintptr(cfd), "")}
				}
			}
		}
	})
	if failed != nil {
		return failed
	}
	return err
}

// chanListener is a net.Listener whose connections come from a channel.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	err   atomic.Pointer[error]
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, *l.err.Load()
	}
}

func (l *chanListener) fail(err error) {
	if l.err.CompareAndSwap(nil, &err) {
		close(l.done)
	}
}

func (l *chanListener) Close() error { l.fail(net.ErrClosed); return nil }

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// fileConn is a received TCP descriptor as a net.Conn: an *os.File (which
// polls it with the runtime's netpoller and keeps its deadlines) and the
// addresses, looked up when asked for.
type fileConn struct {
	*os.File
}

// LocalAddr and RemoteAddr ask the kernel, as herd's workers do (with
// package syscall's calls: x/sys/unix's add a getsockopt each).
func (c *fileConn) LocalAddr() net.Addr { return c.addr(syscall.Getsockname) }

func (c *fileConn) RemoteAddr() net.Addr { return c.addr(syscall.Getpeername) }

func (c *fileConn) addr(get func(int) (syscall.Sockaddr, error)) net.Addr {
	var sa syscall.Sockaddr
	rc, err := c.File.SyscallConn()
	if err == nil {
		rc.Control(func(fd uintptr) { sa, _ = get(int(fd)) })
	}
	if in, ok := sa.(*syscall.SockaddrInet4); ok {
		return &net.TCPAddr{IP: net.IP(in.Addr[:]), Port: in.Port}
	}
	return &net.TCPAddr{}
}
