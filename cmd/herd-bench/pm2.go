package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The pm2 systems: PM2 (https://pm2.keymetrics.io), the supervisor Node
// users run for what herd's pool does, as the reference of the reload and
// restart scenarios. PM2 runs its cluster mode with 2 instances of
// node/pm2_app.js, a tiny Node http server without any shutdown handling
// (what `pm2 start app.js -i 2` runs), driven through PM2's own API by
// node/pm2.js, which speaks the child protocol: it reloads on a "reload"
// line (`pm2 reload`), kills instances for the restart scenario, and stops
// PM2's daemon (`pm2 kill`) when its stdin ends. Every run has a PM2_HOME
// of its own in the scratch directory.
//
// PM2 comes from npm: -pm2 auto (the default) uses the copy installed under
// the user's cache directory (herd-bench/pm2-7) and installs it there with
// `npm install --prefix` when it is not, -pm2 cached only uses that copy,
// -pm2 DIR uses the pm2 package in DIR, and -pm2 '' skips the pm2 systems.
// Like node, PM2 missing is said in the output and its keys are left out.

// pm2Version is the PM2 the harness installs: the major version the
// project compares against.
const pm2Version = "7"

// The modes of node/pm2.js.
const (
	pm2ModeReload  = "reload"
	pm2ModeRestart = "restart"
)

// envPM2Module tells node/pm2.js where the pm2 package is.
const envPM2Module = "HERD_BENCH_PM2_MODULE"

// pm2Home counts the PM2_HOME directories of the runs.
var pm2Home atomic.Int64

func needsPM2(cfg *config) string {
	if cfg.pm2Dir == "" {
		return "pm2 not available (" + cfg.pm2Why + ")"
	}
	return ""
}

// pm2Wanted reports whether a selected scenario has a pm2 system.
func (cfg *config) pm2Wanted() bool {
	for _, sc := range scenarios() {
		if len(cfg.only) > 0 && !slices.Contains(cfg.only, sc.name) {
			continue
		}
		for _, sys := range sc.systems {
			if sys.name == "pm2" {
				return true
			}
		}
	}
	return false
}

// describePM2 finds (or installs) PM2 as -pm2 says, and prints what the
// pm2 systems run; without it they are skipped.
func (cfg *config) describePM2(ctx context.Context, out io.Writer) {
	switch {
	case !cfg.pm2Wanted():
		return
	case cfg.pm2 == "":
		cfg.pm2Why = "-pm2 empty"
	case cfg.nodePath == "":
		cfg.pm2Why = "needs node"
	default:
		dir, why := cfg.findPM2(ctx, out)
		if dir == "" {
			cfg.pm2Why = why
			break
		}
		b, err := os.ReadFile(filepath.Join(dir, "package.json"))
		var pkg struct{ Version string }
		if err == nil {
			err = json.Unmarshal(b, &pkg)
		}
		if err != nil {
			cfg.pm2Why = fmt.Sprintf("%s: %v", dir, err)
			break
		}
		cfg.pm2Dir = dir
		fmt.Fprintf(out, "pm2: %s (%s), cluster mode, 2 instances of a tiny Node http server without shutdown handling\n", pkg.Version, dir)
		return
	}
	fmt.Fprintf(out, "pm2: not available (%s); pm2 figures omitted\n", cfg.pm2Why)
}

// findPM2 returns the pm2 package directory -pm2 names, installing it
// with npm for -pm2 auto; or "" and why not.
func (cfg *config) findPM2(ctx context.Context, out io.Writer) (string, string) {
	if cfg.pm2 != "auto" && cfg.pm2 != "cached" {
		for _, dir := range []string{cfg.pm2, filepath.Join(cfg.pm2, "node_modules", "pm2")} {
			if _, err := os.Stat(filepath.Join(dir, "package.json")); err == nil {
				return dir, ""
			}
		}
		return "", fmt.Sprintf("no pm2 package in %s", cfg.pm2)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Sprintf("no cache directory: %v", err)
	}
	prefix := filepath.Join(cache, "herd-bench", "pm2-"+pm2Version)
	dir := filepath.Join(prefix, "node_modules", "pm2")
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err == nil {
		return dir, ""
	}
	if cfg.pm2 == "cached" {
		return "", "not installed under " + prefix + " (-pm2 cached)"
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", "npm not found to install it"
	}
	fmt.Fprintf(out, "pm2: installing pm2@%s with npm into %s\n", pm2Version, prefix)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ictx, npm, "install", "--prefix", prefix, "--no-audit", "--no-fund", "--loglevel", "error", "pm2@"+pm2Version)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Sprintf("npm install pm2@%s failed: %v: %s", pm2Version, err, truncate(strings.TrimSpace(string(b)), 300))
	}
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		return "", fmt.Sprintf("npm installed no %s", dir)
	}
	return dir, ""
}

// startPM2 starts node/pm2.js in mode, with a PM2_HOME of its own.
func startPM2(mode string) func(*config) (*child, error) {
	return func(cfg *config) (*child, error) {
		home := filepath.Join(cfg.tmp, "pm2-"+strconv.FormatInt(pm2Home.Add(1), 10))
		if err := os.MkdirAll(home, 0o700); err != nil {
			return nil, err
		}
		c, err := startNode(cfg, "pm2.js",
			envMode+"="+mode, envPM2Module+"="+cfg.pm2Dir, "PM2_HOME="+home,
			fmt.Sprintf("%s=%d", envWorkers, reloadWorkers), fmt.Sprintf("HERD_BENCH_KILLS=%d", restartKills))
		if err != nil {
			return nil, err
		}
		c.after = func() { killPM2Daemon(home) }
		return c, nil
	}
}

// restartPM2 runs one pm2 restart measurement.
func restartPM2(ctx context.Context, cfg *config) (map[string]float64, error) {
	c, err := startPM2(pm2ModeRestart)(cfg)
	if err != nil {
		return nil, err
	}
	defer c.kill()
	if _, err := c.await(ctx, lineReady, childTimeout); err != nil {
		return nil, err
	}
	c.stop()
	res, err := c.await(ctx, lineResult, childTimeout+restartKills*10*time.Second)
	if err != nil {
		return nil, err
	}
	if err := c.finish(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// killPM2Daemon kills PM2's daemon of home if the driver left it
// running: it is a session of its own, out of the driver's process group.
// Its cluster workers exit when it does.
func killPM2Daemon(home string) {
	b, err := os.ReadFile(filepath.Join(home, "pm2.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	if p, err := os.FindProcess(pid); err == nil && processAlive(pid) {
		_ = p.Kill()
		for deadline := time.Now().Add(10 * time.Second); processAlive(pid) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
}
