// Command spinpoll is an experiment, not part of herd (testdata: the go
// tool's ./... patterns skip it; run it with
// "MODE=spinp SPIN=20us go run ./runtime/internal/link/testdata/spinpoll").
//
// It measures a 16-byte ping-pong between two processes over one
// socketpair, each on a locked OS thread with raw read(2)/write(2):
//
//   - MODE=block: both sides block in read(2);
//   - MODE=spinp: the caller (parent) reads its reply non-blocking in a
//     loop; with SPIN=D it spins at most D, then blocks in poll(2); the
//     callee blocks;
//   - MODE=spinboth: both spin without bound (a lower bound, not a design).
//
// It prints the median and 90th percentile round trip and the caller's CPU
// (getrusage) per round trip.
//
// Measured on the 2-vCPU VM (session 7, idle, cpuidle driver haltpoll),
// 100k round trips each, two sets: block p50 28.7-39.5 us (p90 55-65 us),
// caller CPU 13.3-17.0 us/rtt; spinp SPIN=5us 30.9-31.7 us (too short);
// SPIN=10us 6.3-6.5 us (p90 37 us); SPIN=20us 6.3 us (p90 19-20 us), caller
// CPU 10.1-10.4 us/rtt; unbounded 6.0-6.2 us; spinboth 3.1-3.4 us. A caller
// that spins ~20 us before sleeping cuts the round trip about 5x and uses
// less CPU per round trip than sleeping: on this VM a round trip's cost is
// mostly the sleeping vCPU's wake-up, not the socket. For herd's ipc_rtt
// (26.4 us at 9e25339, 1.52x herd-bench's raw) the lever is a bounded,
// adaptive spin of the link's reader while a call waits (only with an
// idle P, capped near the recent reply latency), not fewer system calls.
// Not the reader's spin: a quick prototype in which the link's reader spun
// 20 us on EAGAIN (HERD_X_SPIN, both processes, every idle read) made
// herd-bench ipc_rtt worse, 28.0-31.1 -> 69.1-70.4 us (two alternated
// pairs): a spinning reader holds its process's P (workers run at
// GOMAXPROCS=1) and a vCPU the peer needs. The spin belongs to a caller
// waiting for its reply, while another P is idle.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var spinFor time.Duration

func read(fd int, b []byte, spin bool) {
	start := time.Now()
	for {
		n, err := syscall.Read(fd, b)
		if err == syscall.EAGAIN {
			if !spin {
				panic("eagain")
			}
			if spinFor > 0 && time.Since(start) > spinFor {
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
					panic(err)
				}
			}
			continue
		}
		if err != nil || n != len(b) {
			panic(fmt.Sprint(n, err))
		}
		return
	}
}

func main() {
	runtime.LockOSThread()
	mode := os.Getenv("MODE") // block | spinp | spinboth
	if os.Getenv("CHILD") == "1" {
		fd := 3
		spin := mode == "spinboth"
		must(syscall.SetNonblock(fd, spin))
		b := make([]byte, 16)
		for {
			read(fd, b, spin)
			write(fd, b)
		}
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	must(err)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "CHILD=1")
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fds[1]), "c")}
	must(cmd.Start())
	fd := fds[0]
	spin := mode != "block"
	if d, err := time.ParseDuration(os.Getenv("SPIN")); err == nil {
		spinFor = d
	}
	must(syscall.SetNonblock(fd, spin))
	b := make([]byte, 16)
	n := 100000
	ds := make([]time.Duration, n)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for i := 0; i < n; i++ {
		t := time.Now()
		write(fd, b)
		read(fd, b, spin)
		ds[i] = time.Since(t)
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cmd.Process.Kill()
	cmd.Wait()
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime)+syscall.TimevalToNsec(ru1.Stime)-syscall.TimevalToNsec(ru0.Utime)-syscall.TimevalToNsec(ru0.Stime)) / time.Duration(n)
	fmt.Printf("%-9s p50 %v p90 %v parent cpu/rtt %v\n", mode, ds[n/2], ds[n*9/10], cpu)
}

// write sends b whole; a 16-byte write to an empty socketpair never splits.
func write(fd int, b []byte) {
	if n, err := syscall.Write(fd, b); err != nil || n != len(b) {
		panic(fmt.Sprint(n, err))
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
