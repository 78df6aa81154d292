//go:build !linux && !darwin

package main

// platformSupported: herd links need Linux or macOS.
const platformSupported = false

func rawPrimary() error { return errUnsupported }

func rawChild() error { return errUnsupported }
