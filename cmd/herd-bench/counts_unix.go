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
// (envCounts), the connections their server accepted, read a request from,
// answered and closed: a shared mapping, so that the counts of the worker
// the harness SIGKILLs survive it. A worker's slot is its ID's: slotSize
// bytes at slotSize*(ID-1).

// counterSlot maps the slot of worker id in the counts file.
func counterSlot(path string, id uint64) (*connCounts, error) {
	if id < 1 || id > killWorkers {
		return nil, fmt.Errorf("worker ID %d has no slot", id)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the mapping stays
	b, err := syscall.Mmap(int(f.Fd()), 0, slotSize*killWorkers, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	off := slotSize * (id - 1)
	// Page-aligned mapping, 8-aligned offsets: the atomics are aligned.
	at := func(i uint64) *atomic.Int64 { return (*atomic.Int64)(unsafe.Pointer(&b[off+8*i])) }
	return &connCounts{accepted: at(0), read: at(1), answered: at(2), closed: at(3)}, nil
}

// readSlot reads worker id's counts from the counts file: accepted, read,
// answered, closed.
func readSlot(path string, id uint64) ([4]int64, error) {
	var n [4]int64
	b, err := os.ReadFile(path)
	if err != nil {
		return n, err
	}
	off := slotSize * (id - 1)
	if id < 1 || uint64(len(b)) < off+slotSize {
		return n, fmt.Errorf("counts file %s has no slot %d", path, id)
	}
	for i := range n {
		n[i] = int64(binary.NativeEndian.Uint64(b[off+8*uint64(i):]))
	}
	return n, nil
}
