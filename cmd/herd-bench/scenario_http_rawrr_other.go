//go:build !linux

package main

// The raw hand-off baseline (scenario_http_rawrr_linux.go) uses accept4.

func needsRawRR(*config) string { return "the raw hand-off baseline needs Linux (accept4)" }

func rawRRPrimary() error { return errUnsupported }

func rawRRWorker() error { return errUnsupported }
