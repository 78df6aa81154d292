//go:build !unix

package main

import "sync/atomic"

// counterSlot cannot share counts here.
func counterSlot(path string, id uint64) (accepted, closed *atomic.Int64, err error) {
	return nil, nil, errUnsupported
}

// readSlot cannot share counts here.
func readSlot(path string, id uint64) (accepted, closed int64, err error) {
	return 0, 0, errUnsupported
}
