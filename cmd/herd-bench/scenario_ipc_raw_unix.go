//go:build linux || darwin

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// platformSupported: herd links work here.
const platformSupported = true

// The raw socketpair baseline: the same processes as herd's IPC scenarios
// (a parent and a child it started), over a bare AF_UNIX socketpair, with
// 40-byte frames (the size of a small herd frame), one write per frame and
// no encoding. Both ends use Go's netpoller, as herd's links do: the
// baseline is the socket and the runtime's I/O path, without herd.

// rawFrame is the size of a raw frame.
const rawFrame = 40

// rawPrimary is the parent end: it starts the child on the other end of a
// socketpair and measures.
func rawPrimary() error {
	mode := os.Getenv(envMode)
	d, err := roleDuration()
	if err != nil {
		return err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	ours, theirs := os.NewFile(uintptr(fds[0]), "raw-parent"), os.NewFile(uintptr(fds[1]), "raw-child")
	exe, err := os.Executable()
	if err != nil {
		ours.Close()
		theirs.Close()
		return err
	}
	cmd := exec.Command(exe)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envRole+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, envRole+"="+roleRawChild)
	cmd.ExtraFiles = []*os.File{theirs} // descriptor 3
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		ours.Close()
		return fmt.Errorf("start raw child: %w", err)
	}
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	var v, n float64
	figs := map[string]float64{}
	switch mode {
	case modeOneway:
		v, n, err = rawOneway(conn, d)
	case modeRTT:
		sw := startSwitchCount(os.Getpid(), cmd.Process.Pid)
		cpu0, ok0 := selfCPU()
		ccpu0, cok0 := processCPU(cmd.Process.Pid)
		v, n, err = rawRTT(conn, d)
		if perRTT, ok := sw.per(n + warmup); ok {
			figs["raw_socketpair_rtt_ctx_switches"] = perRTT
		}
		if cpu1, ok1 := selfCPU(); ok0 && ok1 && n > 0 {
			figs["raw_socketpair_rtt_caller_cpu_us"] = float64((cpu1 - cpu0).Nanoseconds()) / 1e3 / (n + warmup)
		}
		if ccpu1, cok1 := processCPU(cmd.Process.Pid); cok0 && cok1 && n > 0 {
			figs["raw_socketpair_rtt_callee_cpu_us"] = float64((ccpu1 - ccpu0).Nanoseconds()) / 1e3 / (n + warmup)
		}
	case mode1MiB:
		v, n, err = rawBlobRTT(conn, d)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	conn.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("raw child: %w", err)
	}
	figs["value"], figs["n"] = v, n
	emit(lineResult, figs)
	return nil
}

// rawOneway sends the child the deadline, then reads 64 KiB at a time
// until the child closes its end, and returns frames per second.
func rawOneway(conn net.Conn, d time.Duration) (rate, n float64, err error) {
	t0 := time.Now()
	conn.SetDeadline(t0.Add(d + 30*time.Second))
	var start [8]byte
	binary.LittleEndian.PutUint64(start[:], uint64(t0.Add(d).UnixNano()))
	if _, err := conn.Write(start[:]); err != nil {
		return 0, 0, err
	}
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, err := conn.Read(buf)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, err
		}
	}
	elapsed := time.Since(t0)
	if total%rawFrame != 0 {
		return 0, 0, fmt.Errorf("read %d bytes, not whole %d-byte frames", total, rawFrame)
	}
	return float64(total/rawFrame) / elapsed.Seconds(), float64(total / rawFrame), nil
}

// rawRTT writes a frame and reads the child's echo, for d, and returns the
// median round trip in µs.
func rawRTT(conn net.Conn, d time.Duration) (medianUS, n float64, err error) {
	conn.SetDeadline(time.Now().Add(d + 30*time.Second))
	out, in := make([]byte, rawFrame), make([]byte, rawFrame)
	samples := make([]int64, 0, 1<<16)
	var end time.Time
	for i := 0; ; i++ {
		if i == warmup {
			end = time.Now().Add(d)
		}
		if i > warmup && (!time.Now().Before(end) || len(samples) == maxSamples) {
			break
		}
		binary.LittleEndian.PutUint64(out, uint64(i))
		start := time.Now()
		if _, err := conn.Write(out); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(conn, in); err != nil {
			return 0, 0, err
		}
		took := time.Since(start)
		if binary.LittleEndian.Uint64(in) != uint64(i) {
			return 0, 0, fmt.Errorf("echo %d came back as %d", i, binary.LittleEndian.Uint64(in))
		}
		if i >= warmup {
			samples = append(samples, took.Nanoseconds())
		}
	}
	return durationMedianUS(samples), float64(len(samples)), nil
}

// rawBlobRTT writes 1 MiB and reads the child's echo of it, for d (at
// least 5 times), and returns the median round trip in ms: the floor a
// socketpair and Go's netpoller set for moving a 1 MiB message each way.
func rawBlobRTT(conn net.Conn, d time.Duration) (medianMS, n float64, err error) {
	conn.SetDeadline(time.Now().Add(d + 30*time.Second))
	out, in := make([]byte, blobSize), make([]byte, blobSize)
	for i := range out {
		out[i] = byte(i * 7)
	}
	var samples []int64
	var end time.Time
	for i := 0; ; i++ {
		if i == 3 {
			end = time.Now().Add(d)
		}
		if i > 3 && !time.Now().Before(end) && len(samples) >= 5 {
			break
		}
		start := time.Now()
		if _, err := conn.Write(out); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(conn, in); err != nil {
			return 0, 0, err
		}
		if i >= 3 {
			samples = append(samples, time.Since(start).Nanoseconds())
		}
	}
	return durationMedianUS(samples) / 1e3, float64(len(samples)), nil
}

// rawChild is the child end, on descriptor 3.
func rawChild() error {
	f := os.NewFile(3, "raw")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("descriptor 3: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Minute))
	frame := make([]byte, rawFrame)
	switch mode := os.Getenv(envMode); mode {
	case modeOneway:
		var start [8]byte
		if _, err := io.ReadFull(conn, start[:]); err != nil {
			return err
		}
		// At least one batch, even when the end has passed by the time
		// this process runs (a loaded machine): a run always measures
		// something.
		end := time.Unix(0, int64(binary.LittleEndian.Uint64(start[:])))
		for {
			for range 64 {
				if _, err := conn.Write(frame); err != nil {
					return err
				}
			}
			if !time.Now().Before(end) {
				return nil
			}
		}
	case modeRTT, mode1MiB:
		if mode == mode1MiB {
			frame = make([]byte, blobSize)
		}
		for {
			if _, err := io.ReadFull(conn, frame); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if _, err := conn.Write(frame); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
}
