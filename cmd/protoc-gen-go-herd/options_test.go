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
// case refers to exactly these identifiers of herd's runtime, and the
// internalapi case to exactly these of its callapi package. Both compile
// (client_test.go imports them), so herd's runtime declares them all.
func TestRuntimeAPI(t *testing.T) {
	want := slices.Sorted(slices.Values(runtimeAPI))
	for _, c := range []struct {
		file, pkg string
	}{
		{"simple/gen/counter/v1/counterv1herd/counter.herd.go", string(defaultRuntimeImport)},
		{"internalapi/gen/control/v1/control.herd.go", testdataModule + "/internalapi/callapi"},
	} {
		if got := selectorsOf(t, filepath.Join("internal", "testdata", filepath.FromSlash(c.file)), c.pkg); !slices.Equal(got, want) {
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
