//go:build !herdlisten

package main

// Until runtime.Listen lands, the herd systems that listen are not
// available.

// haveListen says whether this tree has runtime.Listen.
const haveListen = false

func needsListen(cfg *config) string {
	return "runtime.Listen is not in this tree yet"
}

func forkPrimary() error  { return errUnsupported }
func listenWorker() error { return errUnsupported }
func httpPrimary() error  { return errUnsupported }
func httpWorker() error   { return errUnsupported }
