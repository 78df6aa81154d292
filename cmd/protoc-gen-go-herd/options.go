package main

import (
	"flag"
	"fmt"
	"go/token"
	"maps"
	"path"
	"slices"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The plugin's own options, given next to protogen's paths=, module= and
// M<file>= (see the package doc).
const (
	packageSuffixOption = "package_suffix"
	herdPackageOption   = "herd_package"
	runtimeImportOption = "runtime_import"
	handlerOnlyOption   = "handler_only"
	unexportedOption    = "unexported"
	responsesOption     = "responses"
)

const (
	// defaultPackageSuffix is appended to the Go package name of a .proto
	// file to name the sub-package of its generated herd code: counterv1
	// becomes counterv1herd, in a directory of that name next to the .pb.go
	// file.
	defaultPackageSuffix = "herd"
	// defaultRuntimeImport is the package generated code calls: herd's
	// runtime.
	defaultRuntimeImport = protogen.GoImportPath("github.com/herd-go/herd/runtime")
)

// options are the plugin's own options. The zero value is not ready: use
// newOptions, which sets the defaults.
type options struct {
	// packageSuffix names the Go package of the generated code: the package
	// name of the .pb.go file followed by packageSuffix, in a sub-directory
	// of that name, as protoc-gen-connect-go's package_suffix does. Empty,
	// the generated code goes into the package of the .pb.go file itself.
	packageSuffix string
	// suffixSet records that package_suffix was given, which herd_package
	// excludes.
	suffixSet bool
	// herdPackage, when set, is the one Go package all the generated code
	// goes into, whatever the .pb.go files' packages: a package of the
	// runtime's, say, while the messages stay in a public one.
	herdPackage protogen.GoImportPath
	// herdPackageName is the package name of herdPackage, set by resolve:
	// the name protoc-gen-go gives it when .pb.go files live there too,
	// else its last element.
	herdPackageName protogen.GoPackageName
	// runtime is the import path of the package generated code calls:
	// herd's runtime, or a package that declares the same identifiers
	// (runtimeAPI) for code the runtime itself imports.
	runtime protogen.GoImportPath
	// handlerOnly holds the services generated without clients.
	handlerOnly map[protoreflect.FullName]bool
	// unexported holds the services whose generated names are unexported,
	// for a package's own use (herd's runtime and its control protocol).
	unexported map[protoreflect.FullName]bool
	// responses holds the services whose handlers return
	// *runtime.Response[T] rather than the bare message.
	responses map[protoreflect.FullName]bool
}

func newOptions() *options {
	return &options{
		packageSuffix: defaultPackageSuffix,
		runtime:       defaultRuntimeImport,
		handlerOnly:   make(map[protoreflect.FullName]bool),
		unexported:    make(map[protoreflect.FullName]bool),
		responses:     make(map[protoreflect.FullName]bool),
	}
}

// flagSet returns the flags that set o, for protogen's ParamFunc: protogen
// splits the parameter at commas, handles paths=, module= and M<file>=
// itself and calls the FlagSet's Set with every other name=value pair (an
// empty value for a bare name). An unknown name is an error, "no such flag".
func (o *options) flagSet() *flag.FlagSet {
	flags := flag.NewFlagSet("protoc-gen-go-herd", flag.ContinueOnError)
	flags.Func(packageSuffixOption, "the suffix of the generated package's name; empty: the package of the .pb.go file", func(v string) error {
		// The suffix becomes part of a package name and of a directory
		// name: letters, digits and underscores only.
		if v != "" && !token.IsIdentifier("x"+v) {
			return fmt.Errorf("%s=%s: a suffix of a Go package name has letters, digits and underscores only", packageSuffixOption, v)
		}
		o.packageSuffix = v
		o.suffixSet = true
		return nil
	})
	flags.Func(herdPackageOption, "the import path of the one package all generated code goes into", func(v string) error {
		// The last element names the package.
		if !validImportPath(v) || !token.IsIdentifier(path.Base(v)) {
			return fmt.Errorf("%s=%s: not a Go import path whose last element is a package name", herdPackageOption, v)
		}
		o.herdPackage = protogen.GoImportPath(v)
		return nil
	})
	flags.Func(runtimeImportOption, "the import path of the package generated code calls", func(v string) error {
		if !validImportPath(v) {
			return fmt.Errorf("%s=%s: not a Go import path", runtimeImportOption, v)
		}
		o.runtime = protogen.GoImportPath(v)
		return nil
	})
	flags.Func(handlerOnlyOption, "a service, by full name, to generate without clients; repeat the option for more", func(v string) error {
		name := protoreflect.FullName(v)
		if !name.IsValid() || name.Parent() == "" {
			return fmt.Errorf("%s=%s: not the full name of a service, such as herd.v1.EventService", handlerOnlyOption, v)
		}
		o.handlerOnly[name] = true
		return nil
	})
	flags.Func(unexportedOption, "a service, by full name, whose generated names are unexported; repeat the option for more", func(v string) error {
		name := protoreflect.FullName(v)
		if !name.IsValid() || name.Parent() == "" {
			return fmt.Errorf("%s=%s: not the full name of a service, such as herd.v1.ControlService", unexportedOption, v)
		}
		o.unexported[name] = true
		return nil
	})
	flags.Func(responsesOption, "a service, by full name, whose handlers return *runtime.Response[T]; repeat the option for more", func(v string) error {
		name := protoreflect.FullName(v)
		if !name.IsValid() || name.Parent() == "" {
			return fmt.Errorf("%s=%s: not the full name of a service, such as counter.v1.FileService", responsesOption, v)
		}
		o.responses[name] = true
		return nil
	})
	return flags
}

// validImportPath reports whether path looks like a Go import path: slash
// separated elements, none empty, without spaces, quotes, backslashes or
// the semicolon of go_package. The go command checks the rest when it
// compiles the generated code.
func validImportPath(path string) bool {
	if path == "" || strings.ContainsAny(path, " \t\r\n\"'`\\;:,") {
		return false
	}
	return !slices.Contains(strings.Split(path, "/"), "")
}

// resolve completes the options with what the request says, once protogen
// has parsed them: the name of herd_package's package. It reports options
// that exclude each other, and handler_only services that do not exist
// (see checkHandlerOnly).
func (o *options) resolve(plugin *protogen.Plugin) error {
	if o.herdPackage != "" {
		if o.suffixSet {
			return fmt.Errorf("%s and %s exclude each other: give one", packageSuffixOption, herdPackageOption)
		}
		o.herdPackageName = protogen.GoPackageName(path.Base(string(o.herdPackage)))
		for _, file := range plugin.Files {
			if file.GoImportPath == o.herdPackage {
				o.herdPackageName = file.GoPackageName
				break
			}
		}
	}
	return o.checkHandlerOnly(plugin)
}

// checkHandlerOnly reports a service of handler_only, unexported or
// responses that does not exist, so
// that a misspelt name does not silently generate a client. buf runs the
// plugin once per directory, and each run sees only that directory's files
// and their imports, so a name is checked only by the runs that generate
// files of its proto package (buf's lint puts a package in one directory).
func (o *options) checkHandlerOnly(plugin *protogen.Plugin) error {
	services := make(map[protoreflect.FullName]bool)
	generated := make(map[protoreflect.FullName]bool) // proto packages
	for _, file := range plugin.Files {
		for _, s := range file.Services {
			services[s.Desc.FullName()] = true
		}
		if file.Generate {
			generated[file.Desc.Package()] = true
		}
	}
	for _, opt := range []struct {
		name     string
		services map[protoreflect.FullName]bool
	}{{handlerOnlyOption, o.handlerOnly}, {unexportedOption, o.unexported}, {responsesOption, o.responses}} {
		for _, name := range slices.Sorted(maps.Keys(opt.services)) {
			if generated[name.Parent()] && !services[name] {
				return fmt.Errorf("%s=%s: package %s has no service %s", opt.name, name, name.Parent(), name.Name())
			}
		}
	}
	return nil
}
