package main

import (
	"fmt"
	"go/token"
	"path"
	"path/filepath"
	"strings"
	"unicode"

	"google.golang.org/protobuf/compiler/protogen"
)

// Every identifier the generated code declares is decided in this file:
// newFileNames computes the names of one output file, per service and per
// method, and rejects definitions whose names would collide in Go. The
// functions of generate.go only print them.

// The standard packages generated code imports, besides the runtime
// (options.runtime); protogen gives each import a name that does not collide
// with another import or a predeclared identifier.
const (
	contextPackage = protogen.GoImportPath("context")
	fmtPackage     = protogen.GoImportPath("fmt")
)

const (
	// filenameSuffix replaces .proto in the name of the generated file.
	filenameSuffix = ".herd.go"
	// versionAssertion is the runtime constant generated code refers to, so
	// that it fails to compile against a runtime too old for it.
	versionAssertion = "IsAtLeastVersion0_2_0"
)

// runtimeAPI is every identifier of the runtime that generated code refers
// to: what a package named by the runtime_import option must declare, with
// the runtime's meanings. TestRuntimeAPI keeps it in step with the
// generator and the runtime.
var runtimeAPI = []string{
	versionAssertion,
	"CallOption",
	"Client",
	"ClientConn",
	"ClientOption",
	"CodeUnimplemented",
	"Errorf",
	"HandlerOption",
	"NewClient",
	"NewEventHandler",
	"NewResponseHandler",
	"NewSendClient",
	"NewUnaryHandler",
	"Registrar",
	"Response",
	"SendClient",
	"SendConn",
}

// runtimeAPIFor lists the identifiers of runtimeAPI that only some code
// refers to: a package named by runtime_import needs them only for the
// services of these options.
var runtimeAPIFor = map[string][]string{
	handlerOnlyOption: {"NewEventHandler"},
	responsesOption:   {"NewResponseHandler", "Response"},
}

// fileNames are the names of one generated file.
type fileNames struct {
	// Filename is the path of the generated file, before protogen applies
	// the module= option.
	Filename      string
	GoImportPath  protogen.GoImportPath
	GoPackageName protogen.GoPackageName
	// Runtime is the package the generated code calls: herd's runtime, or
	// the package of the runtime_import option.
	Runtime  protogen.GoImportPath
	Locals   locals
	Services []*serviceNames
}

// serviceNames are the names generated for one service, CounterService in
// package counter.v1 in the examples.
type serviceNames struct {
	Service *protogen.Service
	// HandlerOnly is set for the services of the handler_only option, which
	// get no clients: Client, BroadcastClient and their constructors and
	// implementations are not generated.
	HandlerOnly bool
	// Unexported is set for the services of the unexported option, whose
	// package-level names begin in lower case: controlServiceClient.
	Unexported bool
	// NameConst is the constant of the service's full name: CounterServiceName.
	NameConst string
	// Client is the client interface: CounterServiceClient.
	Client string
	// NewClient is the client's constructor: NewCounterServiceClient.
	NewClient string
	// ClientImpl is the unexported struct that implements Client:
	// counterServiceClient.
	ClientImpl string
	// BroadcastClient is the fire-and-forget client interface, with the
	// Send methods of Client only: CounterServiceBroadcastClient.
	BroadcastClient string
	// NewBroadcastClient is its constructor, which takes a
	// runtime.SendConn such as the primary's Broadcast:
	// NewCounterServiceBroadcastClient.
	NewBroadcastClient string
	// BroadcastClientImpl is the unexported struct that implements
	// BroadcastClient: counterServiceBroadcastClient.
	BroadcastClientImpl string
	// Handler is the interface implementations satisfy: CounterServiceHandler.
	Handler string
	// Register registers a Handler: RegisterCounterServiceHandler.
	Register string
	// Unimplemented is the embeddable implementation that returns
	// CodeUnimplemented: UnimplementedCounterServiceHandler.
	Unimplemented string
	// NilCheck is the unexported method of *Unimplemented that reports
	// whether it is a nil pointer, so that Register can reject an
	// implementation that embeds it by nil pointer. It is named per service
	// so that a type embedding the Unimplemented types of two services has
	// both methods.
	NilCheck string
	Methods  []*methodNames
}

// methodNames are the names generated for one method, Add in the examples.
type methodNames struct {
	Method *protogen.Method
	// ProcedureConst is the constant of the procedure:
	// CounterServiceAddProcedure.
	ProcedureConst string
	// Call is the request/response method of the client interface, and the
	// method of the handler interface: Add.
	Call string
	// Send is the fire-and-forget method of the client interface: SendAdd,
	// or SendAdd_ when the service has a method of that name (see
	// resolveSendNames).
	Send string
	// ClientField is the field of ClientImpl that holds the method's
	// *runtime.Client: add.
	ClientField string
	// Request and Response are the qualified Go types of the messages,
	// without the pointer: v1.AddRequest.
	Request, Response string
	// Handler is the kind of the method's handler.
	Handler handlerKind
}

// handlerKind is what a handler method returns, and so the runtime
// function that registers it.
type handlerKind int

const (
	// handlerUnary returns (*Res, error): runtime.NewUnaryHandler.
	handlerUnary handlerKind = iota
	// handlerResponse returns (*runtime.Response[Res], error), for the
	// services of the responses option: runtime.NewResponseHandler.
	handlerResponse
	// handlerEvent returns error, for the methods of a handler_only
	// service that return google.protobuf.Empty, whose response no one
	// reads: runtime.NewEventHandler.
	handlerEvent
)

// emptyMessage is the response type of methods whose handlers return only
// an error in a handler_only service.
const emptyMessage = "google.protobuf.Empty"

// locals are the names of the parameters, receivers and variables of the
// generated functions. Each is the conventional short name, with a trailing
// underscore when the file imports a package of that name: the parameter
// would shadow the package in the function's body.
type locals struct {
	Ctx  string // context.Context of client methods: ctx
	Req  string // request of client methods: req
	Opts string // variadic options: opts
	Conn string // runtime.ClientConn of the client constructor: conn
	// Client is the receiver of client methods: c.
	Client string
	// Registrar and Impl are the parameters of Register: r, impl.
	Registrar, Impl string
	// Unimplemented is the receiver of NilCheck, and the variable Register
	// asserts impl to: u. OK is the assertion's boolean: ok.
	Unimplemented, OK string
}

// newFileNames returns the names of the generated code of file, which must
// have services, to be printed to g. It qualifies every imported identifier
// the file uses, in a fixed order, before choosing the names of locals, so
// that the import names are known and stable. declared holds the
// package-level names already generated into the same Go package by other
// files of this run.
func newFileNames(g *protogen.GeneratedFile, file *protogen.File, out outputFile, opts *options, declared scope) (*fileNames, error) {
	names := &fileNames{
		Filename:      out.Filename,
		GoImportPath:  out.GoImportPath,
		GoPackageName: out.GoPackageName,
		Runtime:       opts.runtime,
	}
	imported := make(map[string]bool)
	qualify := func(ident protogen.GoIdent) string {
		q := g.QualifiedGoIdent(ident)
		if pkg, _, ok := strings.Cut(q, "."); ok {
			imported[pkg] = true
		}
		return q
	}
	qualify(names.Runtime.Ident(versionAssertion))
	qualify(fmtPackage.Ident("Errorf"))
	for _, service := range file.Services {
		if len(service.Methods) > 0 {
			qualify(contextPackage.Ident("Context"))
			break
		}
	}

	for _, service := range file.Services {
		s := newServiceNames(service, opts)
		for _, method := range service.Methods {
			if method.Desc.IsStreamingClient() || method.Desc.IsStreamingServer() {
				return nil, fmt.Errorf("%s: method %s is streaming; herd supports unary methods only",
					file.Desc.Path(), method.Desc.FullName())
			}
			m := &methodNames{
				Method:         method,
				ProcedureConst: s.export(service.GoName + method.GoName + "Procedure"),
				Call:           method.GoName,
				ClientField:    unexported(method.GoName),
				Request:        qualify(method.Input.GoIdent),
				Handler:        kindOf(method, opts),
			}
			// An event handler of a service without clients never names
			// its response type (nor imports its package).
			if !s.HandlerOnly || m.Handler != handlerEvent {
				m.Response = qualify(method.Output.GoIdent)
			}
			s.Methods = append(s.Methods, m)
		}
		resolveSendNames(s.Methods)
		if err := s.checkCollisions(file, declared); err != nil {
			return nil, err
		}
		names.Services = append(names.Services, s)
	}

	local := func(name string) string {
		for imported[name] {
			name += "_"
		}
		return name
	}
	names.Locals = locals{
		Ctx:           local("ctx"),
		Req:           local("req"),
		Opts:          local("opts"),
		Conn:          local("conn"),
		Client:        local("c"),
		Registrar:     local("r"),
		Impl:          local("impl"),
		Unimplemented: local("u"),
		OK:            local("ok"),
	}
	return names, nil
}

// kindOf returns the kind of the handler of method.
func kindOf(method *protogen.Method, opts *options) handlerKind {
	service := method.Parent.Desc.FullName()
	switch {
	case opts.handlerOnly[service] && method.Output.Desc.FullName() == emptyMessage:
		return handlerEvent
	case opts.responses[service]:
		return handlerResponse
	}
	return handlerUnary
}

// newServiceNames returns the package-level names of service, without its
// methods. The names of a service of the unexported option begin in lower
// case (controlServiceClient, newControlServiceClient,
// registerControlServiceHandler), and the structs that implement its
// clients take the suffix Impl, since the interfaces have their names.
func newServiceNames(service *protogen.Service, opts *options) *serviceNames {
	s := &serviceNames{
		Service:     service,
		HandlerOnly: opts.handlerOnly[service.Desc.FullName()],
		Unexported:  opts.unexported[service.Desc.FullName()],
	}
	impl := unexported
	if s.Unexported {
		impl = func(name string) string { return unexported(name) + "Impl" }
	}
	name := service.GoName
	s.NameConst = s.export(name + "Name")
	s.Client = s.export(name + "Client")
	s.NewClient = s.export("New" + name + "Client")
	s.ClientImpl = impl(name + "Client")
	s.Handler = s.export(name + "Handler")
	s.Register = s.export("Register" + name + "Handler")
	s.Unimplemented = s.export("Unimplemented" + name + "Handler")
	s.NilCheck = "isNilUnimplemented" + name + "Handler"
	s.BroadcastClient = s.export(name + "BroadcastClient")
	s.NewBroadcastClient = s.export("New" + name + "BroadcastClient")
	s.BroadcastClientImpl = impl(name + "BroadcastClient")
	return s
}

// export returns name as a package-level name of the service: unchanged, or
// unexported for a service of the unexported option.
func (s *serviceNames) export(name string) string {
	if s.Unexported {
		return unexported(name)
	}
	return name
}

// resolveSendNames names the fire-and-forget form of each method "Send"
// followed by the method's name. Where that is the name of another method of
// the service (a service with methods Add and SendAdd), it appends
// underscores until the name is free, visiting methods in their order in the
// .proto file: Add's fire-and-forget form is SendAdd_, SendAdd's is
// SendSendAdd. The request/response form always keeps the method's name, so
// that it matches the handler interface.
func resolveSendNames(methods []*methodNames) {
	taken := make(map[string]bool, 2*len(methods))
	for _, m := range methods {
		taken[m.Call] = true
	}
	for _, m := range methods {
		m.Send = "Send" + m.Call
		for taken[m.Send] {
			m.Send += "_"
		}
		taken[m.Send] = true
	}
}

// checkCollisions reports distinct proto definitions that generate the same
// Go name: among the service's methods (the client and handler interfaces),
// among the fields of the client struct, and in the package, across the
// services of every file generated into it. Go names are the CamelCase of
// proto names, so methods foo_bar and FooBar, or services A with method BC
// and AB with method C, collide.
func (s *serviceNames) checkCollisions(file *protogen.File, declared scope) error {
	methods, fields := make(scope), make(scope)
	for _, m := range s.Methods {
		what := fmt.Sprintf("method %s", m.Method.Desc.FullName())
		if err := methods.declare(m.Call, what); err != nil {
			return fmt.Errorf("%s: %w", file.Desc.Path(), err)
		}
		if err := fields.declare(m.ClientField, what); err != nil {
			return fmt.Errorf("%s: %w", file.Desc.Path(), err)
		}
	}
	// The Send names were chosen not to collide with any method name.

	service := s.Service.Desc.FullName()
	pkg := []struct{ name, what string }{
		{s.NameConst, fmt.Sprintf("the name constant of service %s", service)},
	}
	if !s.HandlerOnly {
		pkg = append(pkg, []struct{ name, what string }{
			{s.Client, fmt.Sprintf("the client interface of service %s", service)},
			{s.NewClient, fmt.Sprintf("the client constructor of service %s", service)},
			{s.ClientImpl, fmt.Sprintf("the client implementation of service %s", service)},
			{s.BroadcastClient, fmt.Sprintf("the broadcast client interface of service %s", service)},
			{s.NewBroadcastClient, fmt.Sprintf("the broadcast client constructor of service %s", service)},
			{s.BroadcastClientImpl, fmt.Sprintf("the broadcast client implementation of service %s", service)},
		}...)
	}
	pkg = append(pkg, []struct{ name, what string }{
		{s.Handler, fmt.Sprintf("the handler interface of service %s", service)},
		{s.Register, fmt.Sprintf("the register function of service %s", service)},
		{s.Unimplemented, fmt.Sprintf("the unimplemented handler of service %s", service)},
	}...)
	for _, m := range s.Methods {
		pkg = append(pkg, struct{ name, what string }{
			m.ProcedureConst, fmt.Sprintf("the procedure constant of method %s", m.Method.Desc.FullName()),
		})
	}
	for _, d := range pkg {
		if err := declared.declare(d.name, d.what); err != nil {
			return fmt.Errorf("%s: %w", file.Desc.Path(), err)
		}
	}
	return nil
}

// scope maps the Go names declared in one scope to what declared them.
type scope map[string]string

func (sc scope) declare(name, what string) error {
	if prev, ok := sc[name]; ok {
		return fmt.Errorf("%s and %s are both named %s in Go; rename one of them", prev, what, name)
	}
	sc[name] = what
	return nil
}

// outputFile is where the generated code of a .proto file goes.
type outputFile struct {
	Filename      string
	GoImportPath  protogen.GoImportPath
	GoPackageName protogen.GoPackageName
}

// newOutputFile places the generated code of file in a sub-package of its
// .pb.go package named with the package_suffix option, as
// protoc-gen-connect-go does: counter/v1/counter.proto with go_package
// example.com/gen/counter/v1;counterv1 generates
// example.com/gen/counter/v1/counterv1herd/counter.herd.go, package
// counterv1herd. An empty suffix places it next to the .pb.go file, in its
// package: example.com/gen/counter/v1/counter.herd.go, package counterv1.
// GeneratedFilenamePrefix already honours paths= and the M flags; protogen
// strips the module= prefix from the final name. The herd_package option
// places it in that package instead, under its import path:
// herd_package=example.com/gen/internal/control generates
// example.com/gen/internal/control/counter.herd.go, package control (or
// the package name of the .pb.go files of that import path, if any).
func newOutputFile(file *protogen.File, opts *options) outputFile {
	prefix := filepath.ToSlash(file.GeneratedFilenamePrefix)
	switch {
	case opts.herdPackage != "":
		return outputFile{
			Filename:      path.Join(string(opts.herdPackage), path.Base(prefix)) + filenameSuffix,
			GoImportPath:  opts.herdPackage,
			GoPackageName: opts.herdPackageName,
		}
	case opts.packageSuffix == "":
		return outputFile{
			Filename:      prefix + filenameSuffix,
			GoImportPath:  file.GoImportPath,
			GoPackageName: file.GoPackageName,
		}
	}
	pkg := file.GoPackageName + protogen.GoPackageName(opts.packageSuffix)
	return outputFile{
		Filename:      path.Join(path.Dir(prefix), string(pkg), path.Base(prefix)) + filenameSuffix,
		GoImportPath:  protogen.GoImportPath(path.Join(string(file.GoImportPath), string(pkg))),
		GoPackageName: pkg,
	}
}

// declareProtocGenGo declares in sc the package-level names protoc-gen-go
// generates for the files of plugin in the Go package pkg, so that herd
// code generated into the same package (an empty package_suffix) reports a
// collision with them as an error rather than as code that does not
// compile. Unexported names are left out: protoc-gen-go's begin with file_
// or is, the generator's end with Client.
func declareProtocGenGo(sc scope, plugin *protogen.Plugin, pkg protogen.GoImportPath) {
	declare := func(name, what string) {
		if _, ok := sc[name]; !ok {
			sc[name] = what + " (generated by protoc-gen-go into the same Go package)"
		}
	}
	var messages func([]*protogen.Message)
	enums := func(enums []*protogen.Enum) {
		for _, e := range enums {
			what := fmt.Sprintf("enum %s", e.Desc.FullName())
			declare(e.GoIdent.GoName, what)
			declare(e.GoIdent.GoName+"_name", what)
			declare(e.GoIdent.GoName+"_value", what)
			for _, v := range e.Values {
				declare(v.GoIdent.GoName, fmt.Sprintf("enum value %s", v.Desc.FullName()))
				if v.PrefixedAlias.GoName != "" {
					declare(v.PrefixedAlias.GoName, fmt.Sprintf("enum value %s", v.Desc.FullName()))
				}
			}
		}
	}
	extensions := func(exts []*protogen.Extension) {
		for _, x := range exts {
			declare("E_"+x.GoIdent.GoName, fmt.Sprintf("extension %s", x.Desc.FullName()))
		}
	}
	messages = func(msgs []*protogen.Message) {
		for _, m := range msgs {
			if m.Desc.IsMapEntry() {
				continue
			}
			declare(m.GoIdent.GoName, fmt.Sprintf("message %s", m.Desc.FullName()))
			for _, f := range m.Fields {
				if f.Oneof != nil && !f.Oneof.Desc.IsSynthetic() {
					declare(f.GoIdent.GoName, fmt.Sprintf("oneof field %s", f.Desc.FullName()))
				}
				if f.Desc.HasDefault() {
					declare("Default_"+m.GoIdent.GoName+"_"+f.GoName, fmt.Sprintf("the default of field %s", f.Desc.FullName()))
				}
			}
			enums(m.Enums)
			extensions(m.Extensions)
			messages(m.Messages)
		}
	}
	for _, file := range plugin.Files {
		if file.GoImportPath != pkg {
			continue
		}
		declare(file.GoDescriptorIdent.GoName, fmt.Sprintf("the descriptor of %s", file.Desc.Path()))
		enums(file.Enums)
		extensions(file.Extensions)
		messages(file.Messages)
	}
}

// unexported returns name with its leading capital, or leading initialism,
// in lower case: Add → add, URLFetch → urlFetch, ID → id. A Go keyword gets
// a trailing underscore: Func → func_.
func unexported(name string) string {
	runes := []rune(name)
	n := 0 // length of the leading run of capitals
	for n < len(runes) && unicode.IsUpper(runes[n]) {
		n++
	}
	if n > 1 && n < len(runes) && unicode.IsLower(runes[n]) {
		n-- // URLFetch: the F starts the next word.
	}
	s := strings.ToLower(string(runes[:n])) + string(runes[n:])
	if token.IsKeyword(s) {
		s += "_"
	}
	return s
}
