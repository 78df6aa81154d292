// Command splitpair is an experiment, not part of herd (testdata: the go
// tool's ./... patterns skip it; run it with
// "go run ./runtime/internal/link/testdata/splitpair MODE DURATION").
//
// It measures a 40-byte ping-pong between two Go processes, as herd-bench's
// raw socketpair does, in three ways:
//
//   - mode 1: one socketpair, both directions on one socket registered with
//     Go's netpoller (net.FileConn), writes through the net.Conn: herd-bench's
//     raw_socketpair, and herd's link;
//   - mode 3: the same, but writes are raw write(2) calls on the same
//     descriptor (as the link's direct writes are);
//   - mode 2: two socketpairs, one per direction: each process reads from
//     a socket registered with the netpoller and writes with raw write(2) to
//     another socket that is never registered.
//
// Why mode 2 is cheaper: when a process reads, the kernel frees the skb and
// calls unix_write_space on the SENDER's socket (sock_wfree), which wakes
// every sleeper on that socket's wait queue with EPOLLOUT. Go's netpoller
// registers each descriptor for EPOLLIN|EPOLLOUT|EPOLLET, so with one socket
// per link the sender's epoll is a sleeper, and each read of a request or
// reply wakes the other process's thread blocked in epoll_pwait for nothing
// (the reader pays the wake-up, an IPI on an idle vCPU, inside its recvmsg;
// the woken process pays an epoll_pwait and a context switch). With a write
// socket that is not registered, nobody sleeps on it.
//
// Measured on the 2-vCPU VM (session 6, load 2.4-3.1, alternated, 2 s each,
// six runs of each): median round trip, mode 3 15.5-17.3 us (median 16.4),
// mode 2 14.8-15.5 us (median 14.9); CPU per round trip per process
// (getrusage) ~10.2-12.0 us against ~8.8-9.5 us; voluntary context
// switches per process per round trip ~1.15 against ~0.92. Both processes
// pinned to one CPU: ~9.4 against ~8.8 us of CPU per side, 14.5 against
// 14.0-14.7 us per round trip.
//
// The same in herd (branch rttcallee-split, session 6): CPU per round trip
// falls on both sides everywhere (pinned 13.3 -> 10.2 us primary, 14.0 ->
// 11.2 us worker), and the pinned round trip with it (27 -> 21.5 us); but
// with the processes on two CPUs of an idle machine the latency does not
// improve (herd-bench ipc_rtt 27.4-29.5 against 23.4-29.6 us, load 1.3-2):
// the spurious wake-up also woke the other vCPU early, before the answer
// came, and an idle vCPU's wake-up is most of the round trip's wait.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

const frame = 40

func main() {
	if os.Getenv("PP_CHILD") != "" {
		child()
		return
	}
	mode, _ := strconv.Atoi(os.Args[1])
	d, _ := time.ParseDuration(os.Args[2])
	var rd net.Conn
	var wfd int
	var extra []*os.File
	if mode == 1 || mode == 3 {
		fds, _ := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		syscall.CloseOnExec(fds[0])
		f := os.NewFile(uintptr(fds[0]), "p")
		rd, _ = net.FileConn(f)
		f.Close()
		extra = []*os.File{os.NewFile(uintptr(fds[1]), "c")}
		wfd = connFD(rd)
	} else {
		up, _ := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)   // child -> parent
		down, _ := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0) // parent -> child
		syscall.CloseOnExec(up[0])
		syscall.CloseOnExec(down[0])
		f := os.NewFile(uintptr(up[0]), "p-read")
		rd, _ = net.FileConn(f)
		f.Close()
		wfd = down[0] // never registered: raw writes
		extra = []*os.File{os.NewFile(uintptr(up[1]), "c-write"), os.NewFile(uintptr(down[1]), "c-read")}
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PP_CHILD="+strconv.Itoa(mode))
	cmd.ExtraFiles = extra
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	for _, f := range extra {
		f.Close()
	}
	out, in := make([]byte, frame), make([]byte, frame)
	var samples []int64
	end := time.Now().Add(d)
	for i := 0; ; i++ {
		if i >= 1000 && time.Now().After(end) {
			break
		}
		t0 := time.Now()
		if mode == 1 {
			if _, err := rd.Write(out); err != nil {
				panic(err)
			}
		} else {
			rawWrite(wfd, out)
		}
		if _, err := io.ReadFull(rd, in); err != nil {
			panic(err)
		}
		if i >= 1000 {
			samples = append(samples, time.Since(t0).Nanoseconds())
		}
	}
	rd.Close()
	if mode == 2 {
		syscall.Close(wfd)
	}
	cmd.Wait()
	var ru, rc syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &rc)
	n := float64(len(samples) + 1000)
	cpu := func(r *syscall.Rusage) float64 {
		return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e3 / n
	}
	fmt.Printf("parent %.2fus/rtt (nvcsw %.2f nivcsw %.2f) child %.2fus/rtt (nvcsw %.2f nivcsw %.2f) ", cpu(&ru), float64(ru.Nvcsw)/n, float64(ru.Nivcsw)/n, cpu(&rc), float64(rc.Nvcsw)/n, float64(rc.Nivcsw)/n)
	sort.Slice(samples, func(a, b int) bool { return samples[a] < samples[b] })
	fmt.Printf("mode=%d n=%d median=%.2fus\n", mode, len(samples), float64(samples[len(samples)/2])/1e3)
}

func rawWrite(fd int, p []byte) {
	for len(p) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafePtr(p)), uintptr(len(p)))
		if e != 0 {
			panic(e)
		}
		p = p[n:]
	}
}

func child() {
	mode, _ := strconv.Atoi(os.Getenv("PP_CHILD"))
	var rd net.Conn
	wfd := -1
	if mode == 1 || mode == 3 {
		f := os.NewFile(3, "c")
		rd, _ = net.FileConn(f)
		f.Close()
		wfd = connFD(rd)
	} else {
		wfd = 3
		f := os.NewFile(4, "c-read")
		rd, _ = net.FileConn(f)
		f.Close()
	}
	buf := make([]byte, frame)
	for {
		if _, err := io.ReadFull(rd, buf); err != nil {
			return
		}
		if mode == 1 {
			rd.Write(buf)
		} else {
			rawWrite(wfd, buf)
		}
	}
}

func connFD(c net.Conn) int {
	rc, _ := c.(syscall.Conn).SyscallConn()
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func unsafePtr(p []byte) unsafe.Pointer { return unsafe.Pointer(&p[0]) }
