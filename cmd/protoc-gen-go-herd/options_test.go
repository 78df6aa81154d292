package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

func TestOptionErrors(t *testing.T) {
	for _, tt := range []struct {
		param, want string
	}{
		{"package_suffix=a/b", "package_suffix=a/b: a suffix of a Go package name has letters, digits and underscores only"},
		{"package_suffix=-x", "package_suffix=-x: a suffix of a Go package name has letters, digits and underscores only"},
		{"runtime_import", "runtime_import=: not a Go import path"},
		{"runtime_import=example.com//callapi", "runtime_import=example.com//callapi: not a Go import path"},
		{"runtime_import=example.com/x;x", "runtime_import=example.com/x;x: not a Go import path"},
		{"herd_package=example.com/go-herd", "herd_package=example.com/go-herd: not a Go import path whose last element is a package name"},
		{"herd_package=", "herd_package=: not a Go import path whose last element is a package name"},
		{"handler_only", "handler_only=: not the full name of a service, such as herd.v1.EventService"},
		{"handler_only=EventService", "handler_only=EventService: not the full name of a service, such as herd.v1.EventService"},
		{"handler_only=.herd.v1.EventService", "handler_only=.herd.v1.EventService: not the full name of a service, such as herd.v1.EventService"},
	} {
		req := &pluginpb.CodeGeneratorRequest{
			FileToGenerate: []string{"a.proto"},
			Parameter:      proto.String(tt.param),
			ProtoFile: []*descriptorpb.FileDescriptorProto{
				testFile("a.proto", "a", "example.com/a", map[string][]string{"S": {"M"}}),
			},
		}
		_, err := protogen.Options{ParamFunc: newOptions().flagSet().Set}.New(req)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: error %v, want %s", tt.param, err, tt.want)
		}
	}
}

func TestOptionValues(t *testing.T) {
	opts := newOptions()
	if opts.packageSuffix != "herd" || opts.runtime != "github.com/herd-go/herd/runtime" || len(opts.handlerOnly) != 0 {
		t.Errorf("defaults: %+v", opts)
	}
	flags := opts.flagSet()
	for _, p := range [][2]string{
		{"package_suffix", ""},
		{"runtime_import", "example.com/internal/callapi"},
		{"handler_only", "a.v1.S"},
		{"handler_only", "b.v1.T"},
	} {
		if err := flags.Set(p[0], p[1]); err != nil {
			t.Fatalf("%s=%s: %v", p[0], p[1], err)
		}
	}
	if opts.packageSuffix != "" || opts.runtime != "example.com/internal/callapi" ||
		!opts.handlerOnly["a.v1.S"] || !opts.handlerOnly["b.v1.T"] || len(opts.handlerOnly) != 2 {
		t.Errorf("after setting: %+v", opts)
	}
}

// TestRuntimeAPI checks runtimeAPI, the identifiers a runtime_import
// package must declare, against the code the generator writes: the simple
// case refers to exactly those not in runtimeAPIFor, the cases of the
// options of runtimeAPIFor to those and the option's own, and the
// internalapi case refers to the same of its callapi package. The cases
// compile (client_test.go and their own tests use them), so herd's runtime
// declares them all.
func TestRuntimeAPI(t *testing.T) {
	optional := make(map[string]bool)
	for _, ids := range runtimeAPIFor {
		for _, id := range ids {
			optional[id] = true
		}
	}
	var core []string
	for _, id := range runtimeAPI {
		if !optional[id] {
			core = append(core, id)
		}
	}
	for _, c := range []struct {
		file, pkg, option string
	}{
		{"simple/gen/counter/v1/counterv1herd/counter.herd.go", string(defaultRuntimeImport), ""},
		{"internalapi/gen/control/v1/control.herd.go", testdataModule + "/internalapi/callapi", ""},
		{"handleronly/gen/jobs/v1/jobsv1herd/jobs.herd.go", string(defaultRuntimeImport), handlerOnlyOption},
		{"responses/gen/files/v1/filesv1herd/files.herd.go", string(defaultRuntimeImport), responsesOption},
	} {
		want := slices.Sorted(slices.Values(append(slices.Clone(core), runtimeAPIFor[c.option]...)))
		got := selectorsOf(t, filepath.Join("internal", "testdata", filepath.FromSlash(c.file)), c.pkg)
		if c.option == responsesOption {
			// A service of the responses option has no other handlers.
			want = slices.DeleteFunc(want, func(id string) bool { return id == "NewUnaryHandler" })
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s refers to %s as\n%q\nbut runtimeAPI lists\n%q", c.file, c.pkg, got, want)
		}
	}
}

// selectorsOf returns the identifiers of package pkg that the Go file
// refers to, sorted.
func selectorsOf(t *testing.T, file, pkg string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	for _, imp := range f.Imports {
		if path, _ := strconv.Unquote(imp.Path.Value); path == pkg {
			name = imp.Name.Name
		}
	}
	if name == "" {
		t.Fatalf("%s does not import %s", file, pkg)
	}
	seen := make(map[string]bool)
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == name {
				seen[sel.Sel.Name] = true
			}
		}
		return true
	})
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// TestInternalAPIDoesNotImportRuntime: code generated with runtime_import
// into the package of its .pb.go depends on nothing of herd's runtime, so
// the runtime can import it without a cycle.
func TestInternalAPIDoesNotImportRuntime(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	pkg := testdataModule + "/internalapi/gen/control/v1"
	out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, testdataModule+"/internalapi/callapi") {
		t.Errorf("%s does not depend on the callapi package; its dependencies:\n%s", pkg, out)
	}
	for _, d := range deps {
		if d == string(defaultRuntimeImport) || strings.HasPrefix(d, string(defaultRuntimeImport)+"/") {
			t.Errorf("%s depends on %s", pkg, d)
		}
	}
}

func TestHerdPackage(t *testing.T) {
	t.Run("one package for every file", func(t *testing.T) {
		req := &pluginpb.CodeGeneratorRequest{
			FileToGenerate: []string{"a/v1/a.proto", "b/v1/b.proto"},
			Parameter:      proto.String("herd_package=example.com/internal/rpc"),
			ProtoFile: []*descriptorpb.FileDescriptorProto{
				testFile("a/v1/a.proto", "a.v1", "example.com/a/v1;av1", map[string][]string{"A": {"M"}}),
				testFile("b/v1/b.proto", "b.v1", "example.com/b/v1;bv1", map[string][]string{"B": {"M"}}),
			},
		}
		resp := generate(t, req)
		if resp.Error != nil {
			t.Fatal(resp.GetError())
		}
		var names []string
		for _, f := range resp.GetFile() {
			names = append(names, f.GetName())
			if !strings.Contains(f.GetContent(), "\npackage rpc\n") {
				t.Errorf("%s is not in package rpc:\n%s", f.GetName(), f.GetContent())
			}
		}
		if want := []string{"example.com/internal/rpc/a.herd.go", "example.com/internal/rpc/b.herd.go"}; !slices.Equal(names, want) {
			t.Errorf("generated %q, want %q", names, want)
		}
	})
	t.Run("the package of a .pb.go file", func(t *testing.T) {
		// herd_package names the import path of a .pb.go file whose package
		// name is not the path's last element: the herd code takes the
		// .pb.go file's package name, and shares its names.
		req := &pluginpb.CodeGeneratorRequest{
			FileToGenerate: []string{"a/v1/a.proto"},
			Parameter:      proto.String("herd_package=example.com/a/v1"),
			ProtoFile: []*descriptorpb.FileDescriptorProto{
				testFile("a/v1/a.proto", "a.v1", "example.com/a/v1;av1", map[string][]string{"A": {"M"}}),
			},
		}
		resp := generate(t, req)
		if resp.Error != nil {
			t.Fatal(resp.GetError())
		}
		if len(resp.GetFile()) != 1 || !strings.Contains(resp.GetFile()[0].GetContent(), "\npackage av1\n") {
			t.Errorf("want one file in package av1, got %v", resp.GetFile())
		}
		req.ProtoFile[0].MessageType[0].Name = proto.String("AClient")
		req.ProtoFile[0].Service[0].Method[0].InputType = proto.String(".a.v1.AClient")
		resp = generate(t, req)
		if want := "protoc-gen-go-herd: a/v1/a.proto: message a.v1.AClient (generated by protoc-gen-go into the same Go package) and the client interface of service a.v1.A are both named AClient in Go; rename one of them"; resp.GetError() != want {
			t.Errorf("error:\n got %q\nwant %q", resp.GetError(), want)
		}
	})
	t.Run("two files of one name", func(t *testing.T) {
		req := &pluginpb.CodeGeneratorRequest{
			FileToGenerate: []string{"a/v1/service.proto", "b/v1/service.proto"},
			Parameter:      proto.String("herd_package=example.com/internal/rpc"),
			ProtoFile: []*descriptorpb.FileDescriptorProto{
				testFile("a/v1/service.proto", "a.v1", "example.com/a/v1;av1", map[string][]string{"A": {"M"}}),
				testFile("b/v1/service.proto", "b.v1", "example.com/b/v1;bv1", map[string][]string{"B": {"M"}}),
			},
		}
		resp := generate(t, req)
		if want := "protoc-gen-go-herd: a/v1/service.proto and b/v1/service.proto would both generate example.com/internal/rpc/service.herd.go; rename one of them"; resp.GetError() != want {
			t.Errorf("error:\n got %q\nwant %q", resp.GetError(), want)
		}
		if len(resp.GetFile()) != 0 {
			t.Errorf("generated %d files with an error", len(resp.GetFile()))
		}
	})
}
