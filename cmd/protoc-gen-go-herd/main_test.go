package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-go/herd/runtime"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/pluginpb"
)

func TestVersionMatchesRuntime(t *testing.T) {
	if version != runtime.Version {
		t.Errorf("protoc-gen-go-herd is version %s, the runtime %s", version, runtime.Version)
	}
	if want := "IsAtLeastVersion" + strings.ReplaceAll(version, ".", "_"); versionAssertion != want {
		t.Errorf("generated code refers to runtime.%s; version %s is runtime.%s", versionAssertion, version, want)
	}
}

// TestBinary builds the plugin and runs it as protoc and buf do: the
// request on stdin, the response on stdout.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	bin := filepath.Join(t.TempDir(), "protoc-gen-go-herd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pluginRun := func(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, exitCode int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatal(err)
			}
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}

	t.Run("version", func(t *testing.T) {
		stdout, stderr, code := pluginRun(t, nil, "--version")
		if stdout != version+"\n" || stderr != "" || code != 0 {
			t.Errorf("--version: stdout %q, stderr %q, exit code %d; want %q, nothing, 0", stdout, stderr, code, version+"\n")
		}
	})
	// The cases with the plugin's own options check that main hands them
	// to run as the tests do.
	for _, name := range []string{"simple", "internalapi", "handleronly", "herdpackage_and_suffix"} {
		t.Run("request "+name, func(t *testing.T) {
			req := findCase(t, name).request(t)
			in, err := proto.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := pluginRun(t, in)
			if code != 0 || stderr != "" {
				t.Fatalf("exit code %d, stderr %q", code, stderr)
			}
			var resp pluginpb.CodeGeneratorResponse
			if err := proto.Unmarshal([]byte(stdout), &resp); err != nil {
				t.Fatal(err)
			}
			if want := generate(t, req); !proto.Equal(&resp, want) {
				t.Errorf("the binary's response differs from the in-process one:\n%v\n%v", &resp, want)
			}
		})
	}
	t.Run("invalid option", func(t *testing.T) {
		req := findCase(t, "simple").request(t)
		req.Parameter = proto.String("package_suffix=a/b")
		in, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		_, stderr, code := pluginRun(t, in)
		if want := "package_suffix=a/b: a suffix of a Go package name has letters, digits and underscores only"; code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("exit code %d, stderr %q; want 1 and %q", code, stderr, want)
		}
	})
	t.Run("unknown option", func(t *testing.T) {
		req := findCase(t, "simple").request(t)
		req.Parameter = proto.String("simple")
		in, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		_, stderr, code := pluginRun(t, in)
		if code != 1 || !strings.Contains(stderr, "no such flag -simple") {
			t.Errorf("exit code %d, stderr %q; want 1 and no such flag", code, stderr)
		}
	})
	t.Run("argument", func(t *testing.T) {
		_, stderr, code := pluginRun(t, nil, "counter.proto")
		if code != 1 || !strings.Contains(stderr, "should be run by protoc") {
			t.Errorf("exit code %d, stderr %q", code, stderr)
		}
	})
}

// findCase returns the golden case of the given name.
func findCase(t *testing.T, name string) goldenCase {
	t.Helper()
	for _, c := range goldenCases {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no golden case %s", name)
	return goldenCase{}
}
