package runtime

import (
	"os"
	"strconv"
)

// EnvWorkerID is the environment sentinel that makes a process a worker, the
// analogue of Node's NODE_UNIQUE_ID. The primary sets it to the worker's ID
// when it forks; a worker removes it from its environment at start-up so that
// processes it starts are not mistaken for workers. The caller of Fork cannot
// override it.
const EnvWorkerID = "HERD_WORKER_ID"

// EnvPrimaryPID carries the primary's process ID to the worker, so the worker
// can tell that its parent died before it could ask for a parent-death signal
// without comparing its parent's PID to 1 (PID 1 is not special in a
// container).
const EnvPrimaryPID = "HERD_PRIMARY_PID"

// linkFD is the descriptor number of the worker's end of its link: the first
// of os/exec's ExtraFiles.
const linkFD = 3

// The worker identity is read once, at package initialisation, before user
// code can start processes; the sentinel is then removed from the
// environment.
var (
	selfID         uint64
	selfPrimaryPID int
)

func init() {
	v, ok := os.LookupEnv(EnvWorkerID)
	if !ok {
		return
	}
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil || id == 0 {
		return
	}
	selfID = id
	selfPrimaryPID, _ = strconv.Atoi(os.Getenv(EnvPrimaryPID))
	os.Unsetenv(EnvWorkerID)
	os.Unsetenv(EnvPrimaryPID)
	// Still on the main thread: see armParentDeath.
	armParentDeath(selfPrimaryPID)
}

// IsWorker reports whether this process was started by a herd primary as a
// worker (Node's cluster.isWorker).
func IsWorker() bool { return selfID != 0 }

// IsPrimary reports whether this process is not a worker (Node's
// cluster.isPrimary). Any process not forked by a primary, including the
// children a worker starts itself, is a primary.
func IsPrimary() bool { return selfID == 0 }
