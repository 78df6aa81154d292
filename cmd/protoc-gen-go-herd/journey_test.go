//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
// It works offline from the module cache: GOPROXY=off, and two steps differ
// from the README's, because this checkout is not a published version:
// herd is required at v0.0.0 and replaced by this checkout instead of
// `go get github.com/herd-go/herd@latest`, and protoc-gen-go is asked for
// at the version herd requires instead of the latest. buf is built from
// this checkout's tools.mod.

// journeyCommands are the README's commands, in order, as the test runs
// them (with the two offline substitutions above).
var journeyCommands = []string{
	"go mod init example.com/hello",
	"go get github.com/herd-go/herd@latest",
	"go get -tool google.golang.org/protobuf/cmd/protoc-gen-go",
	"go get -tool github.com/herd-go/herd/cmd/protoc-gen-go-herd",
	"buf lint",
	"buf generate",
	"go run .",
}

// journeyFiles are the files the user writes, relative to the module root.
var journeyFiles = []string{"buf.yaml", "buf.gen.yaml", "proto/greet/v1/greet.proto", "main.go"}

const journeyOutput = "hello alice from worker 1, ticket 1\nhello bob from worker 2, ticket 2\n"

func TestJourney(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	checkout, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	env := []string{"GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "GOFLAGS" && k != "GOPROXY" && k != "GOWORK" {
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

	buf := filepath.Join(tmp, "bin", "buf")
	run(checkout, "go", "build", "-modfile=tools.mod", "-o", buf, "github.com/bufbuild/buf/cmd/buf")

	mod := filepath.Join(tmp, "hello")
	if err := os.Mkdir(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	run(mod, "go", "mod", "init", "example.com/hello")
	// Instead of go get github.com/herd-go/herd@latest: this checkout.
	run(mod, "go", "mod", "edit", "-require=github.com/herd-go/herd@v0.0.0", "-replace=github.com/herd-go/herd="+checkout)
	sums, err := os.ReadFile(filepath.Join(checkout, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "go.sum"), sums, 0o644); err != nil {
		t.Fatal(err)
	}
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
	if got := run(mod, hello); got != journeyOutput {
		t.Errorf("the program printed %q, want %q", got, journeyOutput)
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
