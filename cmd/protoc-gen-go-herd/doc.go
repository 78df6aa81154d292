// protoc-gen-go-herd is a plugin for the Protobuf compiler that generates
// herd clients and handlers: every message between a herd primary and its
// workers is a call of a method of a proto service, and this plugin turns
// each service into typed Go.
//
// For a service of package counter.v1 in counter/v1/counter.proto,
//
//	option go_package = "example.com/gen/counter/v1;counterv1";
//
//	service CounterService {
//	  rpc Add(AddRequest) returns (AddResponse);
//	}
//
// it writes example.com/gen/counter/v1/counterv1herd/counter.herd.go:
// package counterv1herd, a sub-package of the package of protoc-gen-go's
// counter.pb.go, as protoc-gen-connect-go does. It declares
//
//   - CounterServiceName, the service's full name, and
//     CounterServiceAddProcedure, "/counter.v1.CounterService/Add", the
//     procedure name herd dispatches by;
//   - CounterServiceClient and NewCounterServiceClient, which calls through
//     any runtime.ClientConn (a worker handle, a worker's link to its
//     primary, a runtime.Mux in tests). Each method comes in two forms: Add
//     waits for the response, and SendAdd sends the request without waiting
//     (fire-and-forget, Node's send);
//   - CounterServiceBroadcastClient and NewCounterServiceBroadcastClient,
//     with the Send methods only, which sends through a runtime.SendConn:
//     the primary's Broadcast, to every worker (a broadcast has no single
//     response to wait for, so the request/response form does not exist
//     there rather than failing at run time);
//   - CounterServiceHandler, the interface implementations satisfy, and
//     RegisterCounterServiceHandler, which registers one with any
//     runtime.Registrar (the primary, a worker handle, a worker's link, a
//     runtime.Mux);
//   - UnimplementedCounterServiceHandler, whose methods return
//     runtime.CodeUnimplemented, to embed by value in implementations so
//     that they keep compiling when methods are added.
//     RegisterCounterServiceHandler returns an error for an implementation
//     that embeds it by nil pointer, rather than panicking at the first call;
//   - a compile-time assertion that the herd runtime is recent enough.
//
// Files without services generate nothing. Streaming methods are an error:
// herd supports unary methods only.
//
// # Names and comments
//
// Go names are the CamelCase names protoc-gen-go uses. The fire-and-forget
// form of method M is SendM; when the service also has a method named SendM,
// the plugin appends underscores until the name is free, taking methods in
// their order in the .proto file: a service with methods Add and SendAdd
// gets Add, SendAdd_, SendAdd and SendSendAdd. Imports are named by protogen,
// which avoids collisions between them, and a parameter of a generated
// function gets a trailing underscore when the file imports a package of the
// same name. Definitions whose Go names would collide anyway (methods foo_bar
// and FooBar, or services A with method BC and AB with method C) are
// reported as errors.
//
// The leading comments of services and the leading and trailing comments of
// methods become the docs of the generated interfaces and their methods;
// deprecated services and methods are marked "Deprecated: do not use.", and
// comments before the syntax or edition statement, such as a license, are
// copied to the top of the file.
//
// # Running it
//
// The plugin runs through go tool, so that nothing is installed globally.
// Add it to the module's tools,
//
//	go get -tool github.com/herd-go/herd/cmd/protoc-gen-go-herd
//	go get -tool google.golang.org/protobuf/cmd/protoc-gen-go
//
// list both plugins in buf.gen.yaml, with the same options, so that the herd
// sub-package lands next to the .pb.go files,
//
//	version: v2
//	plugins:
//	  - local: ["go", "tool", "protoc-gen-go"]
//	    out: gen
//	    opt: paths=source_relative
//	  - local: ["go", "tool", "protoc-gen-go-herd"]
//	    out: gen
//	    opt: paths=source_relative
//
// and run buf generate. With protoc, put protoc-gen-go-herd on the PATH and
// run protoc --go_out=gen --go-herd_out=gen counter/v1/counter.proto.
//
// # Options
//
// The plugin takes the options of protoc-gen-go that place files, and no
// other: paths=import (the default: files go under their Go import path) or
// paths=source_relative (next to the .proto file), module=PREFIX (strips
// PREFIX from the import path), and M<file>=<import path> (overrides a file's
// go_package). Any other option is an error.
//
// protoc-gen-go-herd --version prints the plugin's version; the code it
// generates needs a herd runtime of at least that version.
package main
