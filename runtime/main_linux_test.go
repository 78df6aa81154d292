//go:build linux

package runtime_test

import (
	"maps"

	"github.com/herd-go/herd/runtime/herdtest"
)

// linuxRoles are the roles of the Linux-only tests, part of testRoles.
var linuxRoles = withRoles(superviseRoles, herdtest.Roles{
	"stuck-primary":      stuckPrimaryWorker,                        // control_lane_linux_test.go
	"stuck-worker":       stuckWorker,                               // control_lane_linux_test.go
	"flood":              floodWorkerMain,                           // flow_linux_test.go
	"sink":               sinkWorkerMain,                            // flow_linux_test.go
	"marker-main":        func() int { return markerWorker(false) }, // parentdeath_linux_test.go
	"marker-goroutine":   func() int { return markerWorker(true) },  // parentdeath_linux_test.go
	"orphaner":           orphanerMain,                              // reaper_linux_test.go
	"reaper-primary":     reaperPrimaryMain,                         // reaper_linux_test.go
	"fdflood":            fdFloodWorker,                             // hardening_link_test.go
	"holdconns":          holdConnsWorker,                           // hardening_link_test.go
	"reuseport":          reusePortWorker,                           // reuseport_rescue_test.go
	"poolreload-primary": poolReloadPrimary,                         // pool_exec_test.go
	"ahead":              aheadWorker,                               // kill_bound_linux_test.go
	"systemd":            systemdWorkerMain,                         // systemd_linux_test.go
	"systemd-activator":  systemdActivatorMain,                      // systemd_linux_test.go
	"systemd-primary":    systemdPrimaryMain,                        // systemd_linux_test.go
	"adminclient":        adminClientWorker,                         // admin_test.go
	"admin-client":       adminClientMain,                           // admin_test.go
})

// withRoles is roles with more's added.
func withRoles(more, roles herdtest.Roles) herdtest.Roles {
	maps.Copy(roles, more)
	return roles
}
