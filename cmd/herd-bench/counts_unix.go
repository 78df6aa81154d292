//go:build unix

package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// The kill scenario's herd workers count, in a file the harness made
// (envCounts), the connections their server accepted and those it closed:
// a shared mapping, so that the counts of the worker the harness SIGKILLs
// survive it. A worker's slot is its ID's: 16 bytes at 16*(ID-1).

// counterSlot maps the slot of worker id in the counts file.
func counterSlot(path string, id uint64) (accepted, closed *atomic.Int64, err error) {
	if id < 1 || id > killWorkers {
		return nil, nil, fmt.Errorf("worker ID %d has no slot", id)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close() // the mapping stays
	b, err := syscall.Mmap(int(f.Fd()), 0, 16*killWorkers, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	off := 16 * (id - 1)
	// Page-aligned mapping, 8-aligned offsets: the atomics are aligned.
	return (*atomic.Int64)(unsafe.Pointer(&b[off])), (*atomic.Int64)(unsafe.Pointer(&b[off+8])), nil
}

// readSlot reads worker id's counts from the counts file.
func readSlot(path string, id uint64) (accepted, closed int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	off := 16 * (id - 1)
	if id < 1 || uint64(len(b)) < off+16 {
		return 0, 0, fmt.Errorf("counts file %s has no slot %d", path, id)
	}
	return int64(binary.NativeEndian.Uint64(b[off:])), int64(binary.NativeEndian.Uint64(b[off+8:])), nil
}
