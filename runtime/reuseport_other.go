//go:build !linux

package runtime

// reusePortBalances: elsewhere the last socket bound gets every connection
// (BSD semantics), so SchedReusePort falls back to SchedShared.
const reusePortBalances = false
