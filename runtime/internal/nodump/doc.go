// Package nodump makes a herd worker non-dumpable (Linux's
// PR_SET_DUMPABLE 0) when its primary asks for it, as early as a Go program
// can: in this package's initialisation. It imports nothing but syscall,
// and Go initialises, at each step, the first package in import path order
// whose imports are initialised, so this one runs as soon as syscall has:
// before os, time, net, protobuf and the runtime package itself
// (GODEBUG=inittrace=1 shows the order).
//
// It cannot happen earlier, in the primary before execve: the kernel resets
// the dumpable attribute to 1 at every execve of a program its process may
// read, whatever it was before, and to fs.suid_dumpable (0 by default) only
// when the credentials change in a set-user-ID way or the process cannot
// read the program it executes. A worker whose uid/gid the primary changed
// with plain setuid before execve is therefore dumpable again by the time it
// runs, and is exposed to processes of the same uid between execve and this
// package's initialisation (the Go runtime's start-up). A worker program
// the worker's user may execute but not read (mode 0711, owned by another
// user) closes that window: the kernel then makes the process non-dumpable
// at execve itself (with fs.suid_dumpable 0, the default).
//
// The runtime package imports this one; nothing else should.
package nodump

// Env is the environment variable through which the primary asks a worker
// to make itself non-dumpable ("1"). The worker removes it from its
// environment at initialisation, so processes it starts do not inherit it.
const Env = "HERD_WORKER_NONDUMPABLE"

// Err is the error of the prctl call when it was asked for and failed; nil
// otherwise.
var Err error

// Applied reports whether this process made itself non-dumpable at
// initialisation.
var Applied bool
