package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/herd-go/herd/runtime"
)

// The roles this binary plays when the harness (or a primary it started)
// runs it again.
const (
	roleIPCPrimary  = "ipc-primary"  // herd primary of the IPC scenarios
	roleRawPrimary  = "raw-primary"  // raw socketpair, parent end
	roleRawChild    = "raw-child"    // raw socketpair, child end
	roleForkPrimary = "fork-primary" // herd primary of fork8_listening
	roleHTTPPrimary = "http-primary" // herd HTTP cluster
	roleSingle      = "single"       // single-process Go HTTP server
	roleRawRR       = "raw-rr"       // raw hand-off HTTP baseline, accepting process
	roleRawRRWorker = "raw-rr-child" // raw hand-off HTTP baseline, serving child

	roleReloadPrimary  = "reload-primary"  // herd pool of the reload scenarios
	roleRestartPrimary = "restart-primary" // herd pool of restart_ms

	workerIPC    = "ipc"    // herd worker of the IPC scenarios
	workerListen = "listen" // herd worker of fork8_listening
	workerHTTP   = "http"   // herd HTTP worker
	workerReload = "reload" // herd HTTP worker of the reload and restart pools (herdhttp.Serve)
)

// childRole reports the role of this process, when it is not the harness.
func childRole() (string, bool) {
	if runtime.IsWorker() {
		return "worker:" + os.Getenv(envWorkerRole), true
	}
	role := os.Getenv(envRole)
	return role, role != ""
}

// stopProfiles ends the profiles of this child (see profile.go).
var stopProfiles = func() {}

// runRole plays role and returns the exit status.
func runRole(role string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("role", role, "pid", os.Getpid())
	slog.SetDefault(log)
	stopProfiles = startProfiles(role)
	defer stopProfiles()
	var err error
	switch role {
	case roleIPCPrimary:
		err = ipcPrimary()
	case roleRawPrimary:
		err = rawPrimary()
	case roleRawChild:
		err = rawChild()
	case roleForkPrimary:
		err = forkPrimary()
	case roleHTTPPrimary:
		err = httpPrimary()
	case roleSingle:
		err = singleServer()
	case roleRawRR:
		err = rawRRPrimary()
	case roleRawRRWorker:
		err = rawRRWorker()
	case roleReloadPrimary:
		err = reloadPrimary()
	case roleRestartPrimary:
		err = restartPrimary()
	case "worker:" + workerReload:
		err = reloadWorker()
	case "worker:" + workerIPC:
		err = ipcWorker()
	case "worker:" + workerListen:
		err = listenWorker()
	case "worker:" + workerHTTP:
		err = httpWorker()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		log.Error("herd-bench child failed", "error", err)
		return 1
	}
	return 0
}
