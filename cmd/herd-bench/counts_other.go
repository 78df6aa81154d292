//go:build !unix

package main

// counterSlot cannot share counts here.
func counterSlot(path string, id uint64) (*connCounts, error) {
	return nil, errUnsupported
}

// readSlot cannot share counts here.
func readSlot(path string, id uint64) ([4]int64, error) {
	return [4]int64{}, errUnsupported
}
