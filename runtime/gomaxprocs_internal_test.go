package runtime

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestWorkerGOMAXPROCSRule(t *testing.T) {
	for _, c := range []struct{ workers, cpus, want int }{
		{1, 1, 1}, {1, 8, 8}, {2, 2, 1}, {4, 2, 1}, {2, 8, 4}, {3, 8, 2}, {8, 8, 1}, {16, 8, 1},
		{0, 4, 4}, {-1, 4, 4}, {4, 0, 1},
	} {
		if got := WorkerGOMAXPROCS(c.workers, c.cpus); got != c.want {
			t.Errorf("WorkerGOMAXPROCS(%d, %d) = %d, want %d", c.workers, c.cpus, got, c.want)
		}
	}
}

func TestWorkerProcsEnv(t *testing.T) {
	for _, c := range []struct {
		name                  string
		env                   []string
		procs, poolSize, cpus int
		want                  string
	}{
		{"pool default", []string{"PATH=/bin"}, -1, 2, 2, "GOMAXPROCS=1"},
		{"pool default, more CPUs", nil, -1, 2, 8, "GOMAXPROCS=4"},
		{"pool default, more workers than CPUs", nil, -1, 4, 2, "GOMAXPROCS=1"},
		{"bare primary keeps Go's default", nil, -1, 0, 8, ""},
		{"option 0 is Go's default", nil, 0, 4, 2, ""},
		{"option n", nil, 3, 4, 2, "GOMAXPROCS=3"},
		{"option n outside a pool", nil, 2, 0, 8, "GOMAXPROCS=2"},
		{"user's GOMAXPROCS wins over the rule", []string{"GOMAXPROCS=7"}, -1, 2, 2, ""},
		{"user's GOMAXPROCS wins over the option", []string{"A=b", "GOMAXPROCS=7"}, 3, 2, 2, ""},
		{"a look-alike key is not GOMAXPROCS", []string{"GOMAXPROCSX=7"}, -1, 2, 2, "GOMAXPROCS=1"},
		{"an empty GOMAXPROCS is Go's default, not a choice", []string{"GOMAXPROCS="}, -1, 2, 2, "GOMAXPROCS=1"},
	} {
		if got := workerProcsEnv(c.env, c.procs, c.poolSize, c.cpus); got != c.want {
			t.Errorf("%s: workerProcsEnv(%q, %d, %d, %d) = %q, want %q", c.name, c.env, c.procs, c.poolSize, c.cpus, got, c.want)
		}
	}
}

// gomaxprocsOf returns the GOMAXPROCS entries of env.
func gomaxprocsOf(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, envGOMAXPROCS+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// TestWorkerCommandGOMAXPROCS checks the worker's command line environment
// the primary builds: the rule under a Pool, the option, and the user's
// own GOMAXPROCS (WithEnv, WithForkEnv, the primary's environment) left
// alone.
func TestWorkerCommandGOMAXPROCS(t *testing.T) {
	t.Setenv(envGOMAXPROCS, "") // restored after the test
	os.Unsetenv(envGOMAXPROCS)  // the test binary's own, if any, would win
	cpus := DefaultPoolSize()
	want := func(n int) []string { return []string{envGOMAXPROCS + "=" + strconv.Itoa(n)} }
	for _, c := range []struct {
		name string
		opts []PrimaryOption
		fc   forkConfig
		want []string
	}{
		{"pool of 2", nil, forkConfig{poolSize: 2}, want(WorkerGOMAXPROCS(2, cpus))},
		{"bare fork", nil, forkConfig{}, nil},
		{"option 0", []PrimaryOption{WithWorkerGOMAXPROCS(0)}, forkConfig{poolSize: 2}, nil},
		{"option 3", []PrimaryOption{WithWorkerGOMAXPROCS(3)}, forkConfig{}, want(3)},
		{"option -5 restores the default", []PrimaryOption{WithWorkerGOMAXPROCS(3), WithWorkerGOMAXPROCS(-5)}, forkConfig{poolSize: 1}, want(cpus)},
		{"WithEnv wins", []PrimaryOption{WithEnv("GOMAXPROCS=5"), WithWorkerGOMAXPROCS(3)}, forkConfig{poolSize: 2}, []string{"GOMAXPROCS=5"}},
		{"WithForkEnv wins", nil, forkConfig{poolSize: 2, env: []string{"GOMAXPROCS=6"}}, []string{"GOMAXPROCS=6"}},
	} {
		p := NewPrimary(c.opts...)
		cmd, err := p.command(1, p.settings, c.fc)
		if err != nil {
			t.Fatalf("%s: command: %v", c.name, err)
		}
		got := gomaxprocsOf(cmd.Env)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: worker GOMAXPROCS entries %q, want %q", c.name, got, c.want)
		}
	}
}

// TestWorkerCommandGOMAXPROCSFromPrimaryEnv: a GOMAXPROCS in the primary's
// own environment reaches its workers unchanged, rule and option aside.
func TestWorkerCommandGOMAXPROCSFromPrimaryEnv(t *testing.T) {
	t.Setenv(envGOMAXPROCS, "7")
	for _, opts := range [][]PrimaryOption{nil, {WithWorkerGOMAXPROCS(3)}} {
		p := NewPrimary(opts...)
		cmd, err := p.command(1, p.settings, forkConfig{poolSize: 2})
		if err != nil {
			t.Fatalf("command: %v", err)
		}
		if got := gomaxprocsOf(cmd.Env); !slices.Equal(got, []string{"GOMAXPROCS=7"}) {
			t.Errorf("options %d: worker GOMAXPROCS entries %q, want the primary's [GOMAXPROCS=7]", len(opts), got)
		}
	}
}
