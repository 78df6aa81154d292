package main

import (
	"context"
	"embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The node_* systems run Node's own cluster module with these scripts,
// written to a scratch directory and started with `node` (cluster.fork
// re-runs the script file, so they cannot be fed on stdin). They speak the
// harness's child protocol (see child.go).
//
//go:embed node/*.js
var nodeScripts embed.FS

// nodeSerialization describes how the 1 MiB payload travels in Node.
const nodeSerialization = "a Buffer with serialization 'advanced' (V8 serializer, binary)"

// describeNode checks the Node executable, writes the scripts and prints
// what the node_* systems run; without a working node it clears
// cfg.nodePath, and the node_* systems are skipped.
func (cfg *config) describeNode(ctx context.Context, out io.Writer) {
	if cfg.nodePath == "" {
		fmt.Fprintln(out, "node: not used (-node empty); node_* figures omitted")
		return
	}
	path, err := exec.LookPath(cfg.nodePath)
	if err != nil {
		fmt.Fprintf(out, "node: not available (%v); node_* figures omitted\n", err)
		cfg.nodePath = ""
		return
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	version, err := exec.CommandContext(vctx, path, "--version").Output()
	if err != nil {
		fmt.Fprintf(out, "node: %s does not run (%v); node_* figures omitted\n", path, err)
		cfg.nodePath = ""
		return
	}
	if err := writeNodeScripts(cfg.tmp); err != nil {
		fmt.Fprintf(out, "node: %v; node_* figures omitted\n", err)
		cfg.nodePath = ""
		return
	}
	cfg.nodePath = path
	fmt.Fprintf(out, "node: %s (%s), cluster module; 1 MiB payload as %s\n", strings.TrimSpace(string(version)), path, nodeSerialization)
}

// writeNodeScripts copies the embedded scripts to dir/node.
func writeNodeScripts(dir string) error {
	ents, err := nodeScripts.ReadDir("node")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "node"), 0o755); err != nil {
		return fmt.Errorf("write scripts: %w", err)
	}
	for _, e := range ents {
		b, err := nodeScripts.ReadFile("node/" + e.Name())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "node", e.Name()), b, 0o644); err != nil {
			return fmt.Errorf("write scripts: %w", err)
		}
	}
	return nil
}

// startNode starts a Node script as a child.
func startNode(cfg *config, script string, env ...string) (*child, error) {
	cmd := exec.Command(cfg.nodePath, filepath.Join(cfg.tmp, "node", script))
	cmd.Env = append(childEnv(cfg), env...)
	return startChild("node "+script, cmd)
}

// runNode runs a Node script that measures and prints its result.
func runNode(ctx context.Context, cfg *config, script string, env ...string) (map[string]float64, error) {
	c, err := startNode(cfg, script, env...)
	if err != nil {
		return nil, err
	}
	defer c.kill()
	res, err := c.await(ctx, lineResult, cfg.duration+childTimeout)
	if err != nil {
		return nil, err
	}
	if err := c.finish(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// nodeIPC runs one IPC mode of node/ipc.js.
func nodeIPC(mode string) func(context.Context, *config) (map[string]float64, error) {
	return func(ctx context.Context, cfg *config) (map[string]float64, error) {
		return runNode(ctx, cfg, "ipc.js", envMode+"="+mode)
	}
}

// nodeFork runs node/fork.js with 8 workers.
func nodeFork(ctx context.Context, cfg *config) (map[string]float64, error) {
	return runNode(ctx, cfg, "fork.js", fmt.Sprintf("%s=%d", envWorkers, forkWorkers))
}

// serverNode is node/http.js under a Node scheduling policy (rr or none).
func serverNode(policy string) server {
	return func(cfg *config) (*child, error) {
		return startNode(cfg, "http.js", "NODE_CLUSTER_SCHED_POLICY="+policy)
	}
}
