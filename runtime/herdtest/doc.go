// Package herdtest is the cluster test kit: what herd's own tests use to
// test programs that fork workers, for users to test theirs.
//
// A test binary that forks must know, when it starts, whether it is the
// test or one of the processes a test started; a test that forks without
// that check re-runs every test inside the child (a "--- FAIL" from the
// child while go test reports ok). Main is that check: called from
// TestMain with a table of roles, it runs the role named by EnvRole in
// a process a test started (Start, ForkRole, WorkerRole) and the tests
// otherwise. A worker forked without a role fails at once with a message
// saying so, instead of running the tests.
//
// The rest bounds every wait and never sleeps to synchronise:
//
//   - Process (Start) drives a program started in a role: its standard
//     output lines, its standard error, its standard input, signals, its
//     exit status, and the workers it names in its output (WithWorkerPIDs),
//     which must end before the test does.
//   - Events records the cluster events of a Primary (or of one worker) as
//     lines, "online 1", "exit 2 code=3 ...", and waits for one.
//   - WaitUntil and Receive wait for a condition or a value, up to
//     DefaultTimeout (or the test's own deadline), and fail the test with
//     what they were waiting for.
//   - CheckLeaks, Take and Check verify that a test gave back the
//     descriptors, goroutines and child processes it took; WatchPID and
//     WaitGone wait for a process that is not a child (a worker of a primary
//     under test) to end.
//
// A test, as README.md's "Testing a cluster program" shows it:
//
//	func TestMain(m *testing.M) {
//		herdtest.Main(m, herdtest.Roles{"worker": worker})
//	}
//
//	func TestWorkers(t *testing.T) {
//		herdtest.CheckLeaks(t)
//		p := runtime.NewPrimary(herdtest.WorkerRole("worker"))
//		events := herdtest.RecordEvents(t, p)
//		if _, err := p.Fork(context.Background()); err != nil {
//			t.Fatal(err)
//		}
//		events.WaitFor("online 1")
//		...
//	}
package herdtest
