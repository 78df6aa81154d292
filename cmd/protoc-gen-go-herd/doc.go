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
// counter.pb.go, as protoc-gen-connect-go does (options choose another
// package, see below). It declares
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
// A service named by the handler_only option gets the constants and the
// handler side only. Files without services generate nothing. Streaming
// methods are an error: herd supports unary methods only.
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
// The plugin takes the options of protoc-gen-go that place files:
// paths=import (the default: files go under their Go import path) or
// paths=source_relative (next to the .proto file), module=PREFIX (strips
// PREFIX from the import path), and M<file>=<import path> (overrides a file's
// go_package). Its own options are below; any other option is an error.
// Several options are separated by commas, or listed in buf.gen.yaml:
//
//	opt:
//	  - paths=source_relative
//	  - handler_only=counter.v1.EventService
//
// package_suffix=SUFFIX names the package of the generated code: the package
// name of the .pb.go file followed by SUFFIX, in a directory of that name
// next to the .pb.go file. The default is herd (counterv1herd). An empty
// suffix, package_suffix= or a bare package_suffix, generates into the
// package of the .pb.go file itself, as protoc-gen-connect-go's empty
// package_suffix does: counter/v1/counter.herd.go next to counter.pb.go, in
// package counterv1, which then declares both the messages and
// CounterServiceClient. A generated name that collides with one of
// protoc-gen-go's there (a message named CounterServiceClient) is reported
// as an error.
//
// herd_package=IMPORT_PATH generates the code of every file into the one
// package IMPORT_PATH, named after its last element (or as the .pb.go files
// of that import path name it), which imports the .pb.go packages for the
// messages: herd_package=example.com/gen/internal/rpc writes
// example.com/gen/internal/rpc/counter.herd.go. It excludes package_suffix.
// Use it to keep the messages public and the clients and handlers internal.
//
// handler_only=SERVICE generates only the handler side of the service of that
// full name: the name and procedure constants, the Handler interface, its
// Register function and the Unimplemented handler, and no Client or
// BroadcastClient. It is for services that code serves and should not call,
// such as herd's own cluster events (herd.v1.EventService), which the
// runtime calls. Since no one reads their responses, the handlers of its
// methods that return google.protobuf.Empty return only an error, and are
// registered with runtime.NewEventHandler:
//
//	Fork(context.Context, *herdv1.ForkEvent) error Repeat the option for more services
//
// (handler_only=a.v1.S,handler_only=a.v1.T: a comma separates options).
// buf runs the plugin once per directory; a run that generates files of
// the service's proto package reports a service that is not there, so that
// a misspelt name does not silently generate a client.
//
// responses=SERVICE makes the handlers of the service of that full name
// return *runtime.Response[T] instead of *T, as connect-go's handlers return
// *connect.Response[T]: a handler attaches files to its reply (Node's
// send(message, handle)) and a step that runs once the reply is written,
//
//	Open(context.Context, *filesv1.OpenRequest) (*runtime.Response[filesv1.OpenResponse], error)
//
//	return runtime.NewResponse(&filesv1.OpenResponse{}).AttachFiles(f), nil
//
// and they are registered with runtime.NewResponseHandler. The caller
// receives the files with runtime.WithResponseFiles; clients are unchanged.
// Repeat the option for more services. A single handler of another service
// can be written the same way by registering it with
// runtime.NewResponseHandler by hand.
//
// unexported=SERVICE generates the service of that full name with
// unexported package-level names, for a package that speaks a protocol of
// its own without making it part of its API: controlServiceName,
// controlServiceHelloProcedure, controlServiceClient and
// newControlServiceClient, controlServiceHandler,
// registerControlServiceHandler and unimplementedControlServiceHandler (the
// structs behind the client interfaces take the suffix Impl). Procedure
// names, and so the wire, are those of an exported service. Repeat the
// option for more services; a misspelt name is reported as for handler_only.
// herd's runtime serves and calls its own control protocol
// (herd.v1.ControlService) this way, generated into the runtime itself with
// buf's types option, while the public run leaves it out with exclude_types:
//
//	plugins:
//	  - local: ["go", "tool", "protoc-gen-go-herd"]
//	    out: .
//	    exclude_types: [herd.v1.ControlService]
//	    opt:
//	      - module=github.com/herd-go/herd
//	      - handler_only=herd.v1.EventService
//	  - local: ["go", "tool", "protoc-gen-go-herd"]
//	    out: .
//	    types: [herd.v1.ControlService]
//	    opt:
//	      - module=github.com/herd-go/herd
//	      - herd_package=github.com/herd-go/herd/runtime
//	      - unexported=herd.v1.ControlService
//	      - responses=herd.v1.ControlService
//
// Generated into the package named by runtime_import (herd's runtime by
// default), the code refers to the runtime's identifiers unqualified.
//
// runtime_import=IMPORT_PATH makes the generated code call the package
// IMPORT_PATH instead of herd's runtime, for code that must not import the
// runtime. That package must declare, with the meanings of the runtime's,
// the identifiers generated code refers to:
//
//	IsAtLeastVersion0_2_0                     the version assertion
//	ClientConn, SendConn                      what clients call through
//	Client[Req, Res], NewClient               a client of one procedure
//	SendClient[Req], NewSendClient            a fire-and-forget client
//	CallOption, ClientOption, HandlerOption   the options
//	Registrar, NewUnaryHandler                registering handlers
//	NewEventHandler                           with handler_only, for Empty results
//	Response, NewResponseHandler              with responses
//	Errorf, CodeUnimplemented                 the Unimplemented handler's error
//
// A package that re-exports them as aliases of its own (type ClientConn =
// callapi.ClientConn, a NewClient that calls callapi.NewClient) makes the
// stubs' types its own.
//
// protoc-gen-go-herd --version prints the plugin's version; the code it
// generates needs a herd runtime of at least that version.
package main
