//go:build unix && !linux

package runtime_test

import "github.com/herd-go/herd/runtime/herdtest"

// linuxRoles holds, where the Linux-only tests are not built, the roles
// of the other unix tests.
var linuxRoles = herdtest.Roles{
	"adminclient":  adminClientWorker, // admin_test.go
	"admin-client": adminClientMain,   // admin_test.go
}
