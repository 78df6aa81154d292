// Package runtime is herd's runtime: Node.js's cluster module for Go, with
// typed messages.
//
// A program runs as the primary or as a worker. IsPrimary and IsWorker tell
// which: a worker is started by the primary with an environment sentinel
// carrying its ID and one end of a unix socketpair as file descriptor 3.
//
// Messages between the primary and a worker are protobuf messages, defined
// as ordinary proto services and generated into typed clients and handlers
// by protoc-gen-go-herd. A service is served by whichever side registers it
// (the Primary, a Worker handle, or the worker's Self are all Registrars)
// and called through a ClientConn (a Worker handle calls that worker; Self
// calls the primary). Every method can be called as request/response or as
// fire-and-forget.
package runtime
