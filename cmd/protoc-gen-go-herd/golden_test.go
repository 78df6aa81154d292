package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// The inputs of the golden tests are checked in: each case's .proto files
// compiled by buf into image.binpb, and protoc-gen-go's output for the
// compiled cases. Rebuild them after editing a .proto file:
//
//go:generate ./internal/testdata/images.sh

var update = flag.Bool("update", false, "rewrite the golden files with the generator's output")

const regenerate = "go test ./cmd/protoc-gen-go-herd/... -update"

// testdataModule is the import path of internal/testdata, under which the
// compiled cases put their Go packages.
const testdataModule = "github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata"

// goldenCase is a directory of internal/testdata: .proto files, the image
// buf built from them, and the files the plugin should write, under want/
// with the suffix .golden, or under gen/ for compiled cases.
type goldenCase struct {
	name    string // directory under internal/testdata
	dir     string // directory under internal/testdata when it is not name
	param   string // the plugin's parameter, as opt in buf.gen.yaml
	wantErr string // the plugin's error; empty when it generates files
	// compiled cases keep their golden files under gen/ as .go files, next
	// to protoc-gen-go's output, so that they compile and the tests of
	// client_test.go can use them.
	compiled bool
}

var goldenCases = []goldenCase{
	{name: "noservice"},
	{name: "simple", param: "module=" + testdataModule + "/simple/gen", compiled: true},
	{name: "multiservice"},
	{name: "keywords", param: "module=" + testdataModule + "/keywords/gen", compiled: true},
	{name: "deprecated"},
	{name: "comments"},
	{name: "sourcerelative", param: "paths=source_relative"},
	{name: "module", param: "module=example.com/mod"},
	{name: "suffix", param: "package_suffix=rpc"},
	{name: "herdpackage", param: "module=example.com/gen,herd_package=example.com/gen/internal/counterherd"},
	{
		name:    "herdpackage_and_suffix",
		dir:     "herdpackage",
		param:   "herd_package=example.com/gen/internal/counterherd,package_suffix=",
		wantErr: "protoc-gen-go-herd: package_suffix and herd_package exclude each other: give one",
	},
	{name: "samepackage", param: "module=" + testdataModule + "/samepackage/gen,package_suffix", compiled: true},
	{
		name: "internalapi",
		param: "module=" + testdataModule + "/internalapi/gen,package_suffix=," +
			"runtime_import=" + testdataModule + "/internalapi/callapi",
		compiled: true,
	},
	{name: "handleronly", param: "module=" + testdataModule + "/handleronly/gen,handler_only=jobs.v1.EventService", compiled: true},
	{
		name:    "handleronly_unknown",
		dir:     "handleronly",
		param:   "handler_only=jobs.v1.EventServise,handler_only=other.v1.EventService",
		wantErr: "protoc-gen-go-herd: handler_only=jobs.v1.EventServise: package jobs.v1 has no service EventServise",
	},
	{
		name:     "unexported",
		param:    "module=" + testdataModule + "/unexported/gen,package_suffix,unexported=priv.v1.CounterService",
		compiled: true,
	},
	{
		name:     "responses",
		param:    "module=" + testdataModule + "/responses/gen,responses=files.v1.FileService",
		compiled: true,
	},
	{
		name:    "unexported_unknown",
		dir:     "unexported",
		param:   "package_suffix,unexported=priv.v1.CounterServise",
		wantErr: "protoc-gen-go-herd: unexported=priv.v1.CounterServise: package priv.v1 has no service CounterServise",
	},
	{
		name:    "streaming",
		wantErr: "protoc-gen-go-herd: counter/v1/counter.proto: method counter.v1.CounterService.Watch is streaming; herd supports unary methods only",
	},
}

func TestGolden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			resp := generate(t, c.request(t))
			checkFeatures(t, resp)
			if c.wantErr != "" {
				if resp.GetError() != c.wantErr {
					t.Errorf("error:\n got %q\nwant %q", resp.GetError(), c.wantErr)
				}
				if len(resp.GetFile()) != 0 {
					t.Errorf("generated %d files with an error", len(resp.GetFile()))
				}
				return
			}
			if resp.Error != nil {
				t.Fatalf("plugin error: %s", resp.GetError())
			}
			got := make(map[string][]byte)
			for _, f := range resp.GetFile() {
				got[f.GetName()] = []byte(f.GetContent())
				if formatted, err := format.Source(got[f.GetName()]); err != nil {
					t.Errorf("%s: not Go: %v", f.GetName(), err)
				} else if !bytes.Equal(formatted, got[f.GetName()]) {
					t.Errorf("%s: not gofmt-formatted", f.GetName())
				}
			}
			if *update {
				c.writeGolden(t, got)
				return
			}
			c.compareGolden(t, got)
		})
	}
}

// request builds the CodeGeneratorRequest buf would send for the case:
// every file of the image is given, those in the case's directory are to be
// generated.
func (c goldenCase) request(t *testing.T) *pluginpb.CodeGeneratorRequest {
	t.Helper()
	dir := c.path()
	b, err := os.ReadFile(filepath.Join(dir, "image.binpb"))
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatalf("image.binpb: %v", err)
	}
	req := &pluginpb.CodeGeneratorRequest{
		ProtoFile: set.GetFile(),
		CompilerVersion: &pluginpb.Version{
			Major: proto.Int32(0), Minor: proto.Int32(0), Patch: proto.Int32(1), Suffix: proto.String("test"),
		},
	}
	if c.param != "" {
		req.Parameter = proto.String(c.param)
	}
	for _, f := range set.GetFile() {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.GetName()))); err == nil {
			req.FileToGenerate = append(req.FileToGenerate, f.GetName())
			req.SourceFileDescriptors = append(req.SourceFileDescriptors, f)
		}
	}
	if len(req.FileToGenerate) == 0 {
		t.Fatalf("%s: no file of the image is in the directory; rebuild the image with internal/testdata/images.sh", dir)
	}
	return req
}

// generate runs the plugin in-process as main does: the same options, the
// same run function.
func generate(t *testing.T, req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	t.Helper()
	opts := newOptions()
	plugin, err := protogen.Options{ParamFunc: opts.flagSet().Set}.New(req)
	if err != nil {
		t.Fatalf("protogen: %v", err)
	}
	if err := run(plugin, opts); err != nil {
		plugin.Error(err)
	}
	return plugin.Response()
}

func checkFeatures(t *testing.T, resp *pluginpb.CodeGeneratorResponse) {
	t.Helper()
	wantFeatures := uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL | pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)
	if resp.GetSupportedFeatures() != wantFeatures {
		t.Errorf("supported features %d, want %d", resp.GetSupportedFeatures(), wantFeatures)
	}
	if resp.GetMinimumEdition() != int32(descriptorpb.Edition_EDITION_PROTO2) || resp.GetMaximumEdition() != int32(descriptorpb.Edition_EDITION_2023) {
		t.Errorf("editions %d to %d, want proto2 to 2023", resp.GetMinimumEdition(), resp.GetMaximumEdition())
	}
}

// path is the case's directory.
func (c goldenCase) path() string {
	if c.dir != "" {
		return filepath.Join("internal", "testdata", c.dir)
	}
	return filepath.Join("internal", "testdata", c.name)
}

// goldenDir is where the case's golden files are: want/, or gen/ for
// compiled cases.
func (c goldenCase) goldenDir() string {
	if c.compiled {
		return filepath.Join(c.path(), "gen")
	}
	return filepath.Join(c.path(), "want")
}

// goldenPath returns the golden file of a generated file.
func (c goldenCase) goldenPath(name string) string {
	p := filepath.Join(c.goldenDir(), filepath.FromSlash(name))
	if !c.compiled {
		p += ".golden"
	}
	return p
}

// goldenFiles returns the golden files of the case, by generated name.
func (c goldenCase) goldenFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	dir := c.goldenDir()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == dir {
				return nil // no golden files: the case generates nothing
			}
			return err
		}
		suffix := ".golden"
		if c.compiled {
			suffix = filenameSuffix // gen/ also holds protoc-gen-go's files
		}
		if d.IsDir() || !strings.HasSuffix(p, suffix) {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !c.compiled {
			name = strings.TrimSuffix(name, ".golden")
		}
		b, err := os.ReadFile(p)
		files[name] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func (c goldenCase) compareGolden(t *testing.T, got map[string][]byte) {
	t.Helper()
	want := c.goldenFiles(t)
	for _, name := range sortedKeys(got) {
		w, ok := want[name]
		switch {
		case !ok:
			t.Errorf("generated %s, which has no golden file %s\nIf the change is intended, regenerate the golden files: %s",
				name, c.goldenPath(name), regenerate)
		case !bytes.Equal(got[name], w):
			t.Errorf("generated %s differs from %s (- golden, + generated):\n%s\nIf the change is intended, regenerate the golden files: %s",
				name, c.goldenPath(name), lineDiff(string(w), string(got[name])), regenerate)
		}
	}
	for _, name := range sortedKeys(want) {
		if _, ok := got[name]; !ok {
			t.Errorf("did not generate %s (golden file %s)\nIf the change is intended, regenerate the golden files: %s",
				name, c.goldenPath(name), regenerate)
		}
	}
}

// writeGolden replaces the case's golden files with got.
func (c goldenCase) writeGolden(t *testing.T, got map[string][]byte) {
	t.Helper()
	for name := range c.goldenFiles(t) {
		if _, ok := got[name]; !ok {
			if err := os.Remove(c.goldenPath(name)); err != nil {
				t.Fatal(err)
			}
			t.Logf("removed %s", c.goldenPath(name))
		}
	}
	for name, content := range got {
		p := c.goldenPath(name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", p)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// lineDiff returns the lines that differ between want and got, as "-" and
// "+" lines with their line numbers, from a longest common subsequence of
// lines. Generated files are small enough for its quadratic cost.
func lineDiff(want, got string) string {
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	// lcs[i][j] is the length of a longest common subsequence of a[i:], b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	const maxLines = 60
	var out strings.Builder
	lines := 0
	emit := func(format string, args ...any) {
		if lines < maxLines {
			fmt.Fprintf(&out, format, args...)
		} else if lines == maxLines {
			out.WriteString("...\n")
		}
		lines++
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			i++
			j++
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			emit("-%4d: %s\n", i+1, a[i])
			i++
		default:
			emit("+%4d: %s\n", j+1, b[j])
			j++
		}
	}
	return out.String()
}
