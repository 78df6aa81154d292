package main

import (
	"fmt"
	"os"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// version is the version of protoc-gen-go-herd, printed by --version. The
// code it generates requires a runtime of at least this version (see
// versionAssertion).
const version = "0.2.0"

const usage = `protoc-gen-go-herd is a protoc plugin that generates herd clients and handlers.
Run it through buf or protoc; see https://pkg.go.dev/github.com/herd-go/herd/cmd/protoc-gen-go-herd.

Flags:
  -h, --help	Print this help and exit.
      --version	Print the version and exit.`

func main() {
	if len(os.Args) == 2 {
		switch os.Args[1] {
		case "--version":
			fmt.Println(version)
			return
		case "-h", "--help":
			fmt.Println(usage)
			return
		}
	}
	// protogen handles paths=, module= and M<file>=, and hands every other
	// option to the flag set, which makes an unknown one an error instead
	// of silently ignoring it.
	opts := newOptions()
	protogen.Options{ParamFunc: opts.flagSet().Set}.Run(func(plugin *protogen.Plugin) error {
		return run(plugin, opts)
	})
}

// run generates the herd code of a request with the plugin's options. main
// hands it to protogen; the tests call it with a plugin built from their
// own requests.
func run(plugin *protogen.Plugin, opts *options) error {
	plugin.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL |
		pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)
	plugin.SupportedEditionsMinimum = descriptorpb.Edition_EDITION_PROTO2
	plugin.SupportedEditionsMaximum = descriptorpb.Edition_EDITION_2023
	if err := opts.resolve(plugin); err != nil {
		return fmt.Errorf("protoc-gen-go-herd: %w", err)
	}
	declared := make(map[protogen.GoImportPath]scope)
	written := make(map[string]string) // generated file name → its .proto file
	for _, file := range plugin.Files {
		if !file.Generate {
			continue
		}
		if err := generateFile(plugin, file, opts, declared, written); err != nil {
			return fmt.Errorf("protoc-gen-go-herd: %w", err)
		}
	}
	return nil
}
