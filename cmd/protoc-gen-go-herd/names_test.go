package main

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

func TestUnexported(t *testing.T) {
	for in, want := range map[string]string{
		"Add":         "add",
		"AddItem":     "addItem",
		"URLFetch":    "urlFetch",
		"ID":          "id",
		"HTTP2Server": "http2Server",
		"X":           "x",
		"XFoo":        "xFoo",
		"Func":        "func_",
		"Type":        "type_",
		"Interface":   "interface_",
		"TypeClient":  "typeClient",
		"Error":       "error", // predeclared, not a keyword: fine as a field
		"Élan":        "élan",
	} {
		if got := unexported(in); got != want {
			t.Errorf("unexported(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolveSendNames(t *testing.T) {
	var methods []*methodNames
	for _, name := range []string{"Add", "SendAdd", "SendAdd_", "Reset"} {
		methods = append(methods, &methodNames{Call: name})
	}
	resolveSendNames(methods)
	var got []string
	for _, m := range methods {
		got = append(got, m.Send)
	}
	want := []string{"SendAdd__", "SendSendAdd", "SendSendAdd_", "SendReset"}
	if !slices.Equal(got, want) {
		t.Errorf("send names %q, want %q", got, want)
	}
}

// testFile returns a proto3 file of package pkg, with messages Req and Res
// and the given services, each a list of method names, all unary.
func testFile(name, pkg, goPackage string, services map[string][]string) *descriptorpb.FileDescriptorProto {
	f := &descriptorpb.FileDescriptorProto{
		Name:    proto.String(name),
		Package: proto.String(pkg),
		Syntax:  proto.String("proto3"),
		Options: &descriptorpb.FileOptions{GoPackage: proto.String(goPackage)},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Req")},
			{Name: proto.String("Res")},
		},
	}
	for _, s := range sortedKeys(services) {
		sd := &descriptorpb.ServiceDescriptorProto{Name: proto.String(s)}
		for _, m := range services[s] {
			sd.Method = append(sd.Method, &descriptorpb.MethodDescriptorProto{
				Name:       proto.String(m),
				InputType:  proto.String("." + pkg + ".Req"),
				OutputType: proto.String("." + pkg + ".Res"),
			})
		}
		f.Service = append(f.Service, sd)
	}
	return f
}

func TestNameCollisions(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files []*descriptorpb.FileDescriptorProto
		want  string
	}{
		{
			name: "methods",
			files: []*descriptorpb.FileDescriptorProto{
				testFile("a.proto", "a", "example.com/a", map[string][]string{"S": {"foo_bar", "FooBar"}}),
			},
			want: "protoc-gen-go-herd: a.proto: method a.S.foo_bar and method a.S.FooBar are both named FooBar in Go; rename one of them",
		},
		{
			name: "procedure constants",
			files: []*descriptorpb.FileDescriptorProto{
				testFile("a.proto", "a", "example.com/a", map[string][]string{"A": {"BC"}, "AB": {"C"}}),
			},
			want: "protoc-gen-go-herd: a.proto: the procedure constant of method a.A.BC and the procedure constant of method a.AB.C are both named ABCProcedure in Go; rename one of them",
		},
		{
			name: "broadcast client",
			files: []*descriptorpb.FileDescriptorProto{
				testFile("a.proto", "a", "example.com/a", map[string][]string{"S": {"M"}, "SBroadcast": {"N"}}),
			},
			want: "protoc-gen-go-herd: a.proto: the broadcast client interface of service a.S and the client interface of service a.SBroadcast are both named SBroadcastClient in Go; rename one of them",
		},
		{
			name: "files of one Go package",
			files: []*descriptorpb.FileDescriptorProto{
				testFile("x.proto", "x", "example.com/gen;gen", map[string][]string{"S": {"M"}}),
				testFile("y.proto", "y", "example.com/gen;gen", map[string][]string{"S": {"N"}}),
			},
			want: "protoc-gen-go-herd: y.proto: the name constant of service x.S and the name constant of service y.S are both named SName in Go; rename one of them",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := &pluginpb.CodeGeneratorRequest{ProtoFile: tt.files}
			for _, f := range tt.files {
				req.FileToGenerate = append(req.FileToGenerate, f.GetName())
			}
			resp := generate(t, req)
			if resp.GetError() != tt.want {
				t.Errorf("error:\n got %q\nwant %q", resp.GetError(), tt.want)
			}
			if len(resp.GetFile()) != 0 {
				t.Errorf("generated %d files with an error", len(resp.GetFile()))
			}
		})
	}
}

func TestUnknownOption(t *testing.T) {
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: []string{"a.proto"},
		Parameter:      proto.String("paths=source_relative,simple"),
		ProtoFile: []*descriptorpb.FileDescriptorProto{
			testFile("a.proto", "a", "example.com/a", map[string][]string{"S": {"M"}}),
		},
	}
	_, err := protogen.Options{ParamFunc: newOptions().flagSet().Set}.New(req)
	if err == nil || err.Error() != "no such flag -simple" {
		t.Errorf("unknown option: error %v, want no such flag -simple", err)
	}
}
