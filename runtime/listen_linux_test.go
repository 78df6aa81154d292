//go:build linux

package runtime_test

const reusePortSupported = true
