//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The user's journey of README.md's "Define your messages", run for real: a
// new module in a temporary directory, a .proto, buf lint and buf generate
// with this plugin through `go tool`, and a two-worker cluster program that
// calls both ways. The files it writes are testdata/journey, which
// TestJourneyInREADME keeps identical to the README's.
//
// It works offline from the module cache (GOPROXY=off, GOSUMDB=off) with
// the go command's defaults otherwise (no GOFLAGS: a missing go.sum entry
// fails the build, as it does for a user), and two steps differ from the
// README's, because this checkout is not a published version: herd is
// required at v0.0.0 and replaced by this checkout before
// `go get github.com/herd-go/herd/runtime` (instead of @latest), and
// protoc-gen-go is asked for at the version herd requires instead of the
// latest. buf is built from this checkout's tools.mod. The program's output
// is checked, log lines included, against the README's.

// journeyCommands are the README's commands, in order, as the test runs
// them (with the two offline substitutions above).
var journeyCommands = []string{
	"go mod init example.com/hello",
	"go get github.com/herd-go/herd/runtime@latest",
	"go get -tool google.golang.org/protobuf/cmd/protoc-gen-go",
	"go get -tool github.com/herd-go/herd/cmd/protoc-gen-go-herd",
	"buf lint",
	"buf generate",
	"go run .",
}

// journeyFiles are the files the user writes, relative to the module root.
var journeyFiles = []string{"buf.yaml", "buf.gen.yaml", "proto/greet/v1/greet.proto", "main.go"}

// journeyOutput is what `go run .` prints, standard output and standard
// error together, as a terminal shows them: the primary's log lines (on
// standard error, with log's date and time, which differ at every run and
// are compared as a pattern) and the greetings.
const journeyOutput = `2026/01/02 15:04:05 ticket 1 for worker 1
hello alice from worker 1, ticket 1
2026/01/02 15:04:05 ticket 2 for worker 2
hello bob from worker 2, ticket 2
`

// logTime matches the date and time log.Printf starts a line with.
var logTime = regexp.MustCompile(`(?m)^[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} `)

// sameOutput reports whether got is want, but for log's dates and times.
func sameOutput(got, want string) bool {
	const stamp = "YYYY/MM/DD hh:mm:ss "
	return logTime.ReplaceAllString(got, stamp) == logTime.ReplaceAllString(want, stamp)
}

func TestJourney(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	checkout, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	// No GOFLAGS (so no -mod=mod: go.sum is the user's to complete, as
	// it is for them), no proxy and no checksum database (offline: go
	// records the module cache's hashes in go.sum).
	env := []string{"GOPROXY=off", "GOSUMDB=off", "GOWORK=off"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "GOFLAGS" && k != "GOPROXY" && k != "GOSUMDB" && k != "GOWORK" {
			env = append(env, kv)
		}
	}
	run := func(dir string, name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = dir, env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out.String(), errOut.String())
		}
		return out.String()
	}
	// combined runs a command with standard output and standard error
	// going to one pipe, in the order written, as in a terminal.
	combined := func(dir string, name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = dir, env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\noutput:\n%s", name, strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}

	buf := filepath.Join(tmp, "bin", "buf")
	run(checkout, "go", "build", "-modfile=tools.mod", "-o", buf, "github.com/bufbuild/buf/cmd/buf")

	mod := filepath.Join(tmp, "hello")
	if err := os.Mkdir(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	run(mod, "go", "mod", "init", "example.com/hello")
	// Instead of go get github.com/herd-go/herd/runtime@latest: the
	// package of this checkout. Getting the package, not only the module,
	// is what records in go.sum the modules it imports (golang.org/x/sys):
	// without them `go run .` fails with "missing go.sum entry for module
	// providing package golang.org/x/sys/unix".
	run(mod, "go", "mod", "edit", "-require=github.com/herd-go/herd@v0.0.0", "-replace=github.com/herd-go/herd="+checkout)
	run(mod, "go", "get", "github.com/herd-go/herd/runtime")
	run(mod, "go", "get", "-tool", "google.golang.org/protobuf/cmd/protoc-gen-go@"+protobufVersion(t, checkout))
	run(mod, "go", "get", "-tool", "github.com/herd-go/herd/cmd/protoc-gen-go-herd")
	gomod, err := os.ReadFile(filepath.Join(mod, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"google.golang.org/protobuf/cmd/protoc-gen-go", "github.com/herd-go/herd/cmd/protoc-gen-go-herd"} {
		if !bytes.Contains(gomod, []byte(tool)) {
			t.Errorf("go.mod has no tool %s:\n%s", tool, gomod)
		}
	}

	for _, name := range journeyFiles {
		b, err := os.ReadFile(filepath.Join("testdata", "journey", filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(mod, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(mod, buf, "lint")
	run(mod, buf, "generate")
	for _, f := range []string{"gen/greet/v1/greet.pb.go", "gen/greet/v1/greetv1herd/greet.herd.go"} {
		if _, err := os.Stat(filepath.Join(mod, f)); err != nil {
			t.Errorf("buf generate: %v", err)
		}
	}

	// go run ., in two steps so that the program's exit is the test's to
	// wait for.
	hello := filepath.Join(tmp, "bin", "hello")
	run(mod, "go", "build", "-o", hello, ".")
	if got := combined(mod, hello); !sameOutput(got, journeyOutput) {
		t.Errorf("the program printed:\n%s\nwant (but for log's dates and times):\n%s", got, journeyOutput)
	}
}

// protobufVersion is the version of google.golang.org/protobuf the
// checkout requires.
func protobufVersion(t *testing.T, checkout string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(checkout, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == "google.golang.org/protobuf" {
			return f[1]
		}
	}
	t.Fatal("go.mod does not require google.golang.org/protobuf")
	return ""
}

// TestJourneyInREADME keeps the README's "Define your messages" in step
// with what TestJourney runs: every file verbatim, every command in order.
func TestJourneyInREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Define your messages\n")
	if !ok {
		t.Fatal(`README.md has no section "## Define your messages"`)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	for _, name := range journeyFiles {
		b, err := os.ReadFile(filepath.Join("testdata", "journey", filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(section, "\n"+string(b)+"```\n") {
			t.Errorf("the README does not show %s as testdata/journey/%s has it", name, name)
		}
	}
	if !strings.Contains(section, "\n```\n"+journeyOutput+"```\n") {
		t.Errorf("the README does not show the program's output as journeyOutput has it:\n%s", journeyOutput)
	}
	rest := section
	for _, c := range journeyCommands {
		i := strings.Index(rest, "\n"+c+"\n")
		if i < 0 {
			t.Errorf("the README does not run %q (after the commands before it)", c)
			continue
		}
		rest = rest[i+len(c)+1:]
	}
}
