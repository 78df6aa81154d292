//go:build unix && !linux

package runtime_test

const reusePortSupported = false
