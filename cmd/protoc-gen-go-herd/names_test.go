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
	// sharedPackage is a.proto with a message, an enum and a oneof whose
	// Go names collide with the herd code generated into its package.
	sharedPackage := func(service, message, enum, oneofField string) *descriptorpb.FileDescriptorProto {
		f := testFile("a.proto", "a", "example.com/a", map[string][]string{service: {"M"}})
		f.MessageType = append(f.MessageType, &descriptorpb.DescriptorProto{
			Name:      proto.String(message),
			OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("choice")}},
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name:       proto.String(oneofField),
				Number:     proto.Int32(1),
				Label:      descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
				Type:       descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
				JsonName:   proto.String(oneofField),
				OneofIndex: proto.Int32(0),
			}},
		})
		f.EnumType = append(f.EnumType, &descriptorpb.EnumDescriptorProto{
			Name:  proto.String(enum),
			Value: []*descriptorpb.EnumValueDescriptorProto{{Name: proto.String("X"), Number: proto.Int32(0)}},
		})
		return f
	}
	for _, tt := range []struct {
		name  string
		param string
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
		{
			name:  "message in the same package",
			param: "package_suffix=",
			files: []*descriptorpb.FileDescriptorProto{sharedPackage("S", "SClient", "E", "f")},
			want:  "protoc-gen-go-herd: a.proto: message a.SClient (generated by protoc-gen-go into the same Go package) and the client interface of service a.S are both named SClient in Go; rename one of them",
		},
		{
			name:  "enum in the same package",
			param: "package_suffix=",
			files: []*descriptorpb.FileDescriptorProto{sharedPackage("S", "T", "SHandler", "f")},
			want:  "protoc-gen-go-herd: a.proto: enum a.SHandler (generated by protoc-gen-go into the same Go package) and the handler interface of service a.S are both named SHandler in Go; rename one of them",
		},
		{
			name:  "oneof wrapper in the same package",
			param: "package_suffix=",
			// The wrapper of field b_client of message A is A_BClient.
			files: []*descriptorpb.FileDescriptorProto{sharedPackage("A_B", "A", "E", "b_client")},
			want:  "protoc-gen-go-herd: a.proto: oneof field a.A.b_client (generated by protoc-gen-go into the same Go package) and the client interface of service a.A_B are both named A_BClient in Go; rename one of them",
		},
		{
			name:  "handler-only services declare no clients",
			param: "package_suffix=,handler_only=a.S",
			files: []*descriptorpb.FileDescriptorProto{sharedPackage("S", "SClient", "SBroadcastClient", "f")},
		},
		{
			name:  "a sub-package does not share the names",
			files: []*descriptorpb.FileDescriptorProto{sharedPackage("S", "SClient", "SHandler", "f")},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := &pluginpb.CodeGeneratorRequest{ProtoFile: tt.files}
			if tt.param != "" {
				req.Parameter = proto.String(tt.param)
			}
			for _, f := range tt.files {
				req.FileToGenerate = append(req.FileToGenerate, f.GetName())
			}
			resp := generate(t, req)
			if resp.GetError() != tt.want {
				t.Errorf("error:\n got %q\nwant %q", resp.GetError(), tt.want)
			}
			if tt.want != "" && len(resp.GetFile()) != 0 {
				t.Errorf("generated %d files with an error", len(resp.GetFile()))
			}
			if tt.want == "" && len(resp.GetFile()) != 1 {
				t.Errorf("generated %d files, want 1", len(resp.GetFile()))
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
