//go:build unix && !linux

package runtime_test

import "github.com/herd-go/herd/runtime/herdtest"

// linuxRoles is empty where the Linux-only tests are not built.
var linuxRoles = herdtest.Roles{}
