package herdtest

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/herd-go/herd/runtime"
)

// EnvRole is the environment variable that names the role a process of a
// test binary plays. Start, ForkRole and WorkerRole set it; Main reads it.
// It stays in the environment, so the workers a role forks run the same
// role unless they are forked with another (ForkRole): a role that runs a
// whole program (one that is its own worker, by runtime.IsWorker) needs
// nothing more.
const EnvRole = "HERDTEST_ROLE"

// Roles maps role names to the functions that play them. A role function
// runs instead of the tests, in a process started by a test; its result is
// the process's exit status. It plays either side: a role for workers
// builds its runtime.Self, a role for a primary its runtime.Primary, and a
// role that runs a whole program calls the program's main.
type Roles map[string]func() int

// Main is what TestMain calls in a test binary that forks: it runs the role
// EnvRole names and exits with its status; in a worker forked without a
// role it exits with status 2 and a message on standard error (the naive
// alternative runs the tests again, inside the worker); otherwise it runs
// the tests (m.Run) and exits with their status.
func Main(m *testing.M, roles Roles) {
	os.Exit(run(m, roles, os.Stderr))
}

// runner is the part of *testing.M that Main uses.
type runner interface{ Run() int }

func run(m runner, roles Roles, stderr io.Writer) int {
	if role := os.Getenv(EnvRole); role != "" {
		fn, ok := roles[role]
		if !ok {
			fmt.Fprintf(stderr, "herdtest: no role %q in this test binary (it has %s)\n", role, roleNames(roles))
			return 2
		}
		return fn()
	}
	if runtime.IsWorker() {
		fmt.Fprintf(stderr, "herdtest: a worker was forked without a role, so it would run the tests again; "+
			"fork it with herdtest.ForkRole or herdtest.WorkerRole (roles: %s)\n", roleNames(roles))
		return 2
	}
	return m.Run()
}

func roleNames(roles Roles) string {
	if len(roles) == 0 {
		return "no roles"
	}
	names := make([]string, 0, len(roles))
	for name := range roles {
		names = append(names, fmt.Sprintf("%q", name))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// ForkRole is a fork option that starts the worker in role (the primary's
// executable is the test binary, as it is by default).
func ForkRole(role string) runtime.ForkOption {
	return runtime.WithForkEnv(EnvRole + "=" + role)
}

// WorkerRole is a primary option that starts every worker in role, unless
// a fork says otherwise with ForkRole.
func WorkerRole(role string) runtime.PrimaryOption {
	return runtime.WithEnv(EnvRole + "=" + role)
}
