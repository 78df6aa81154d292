// Package clustertest is README.md's "Testing a cluster program": a test of
// a worker, as a user of herd writes it with the runtime/herdtest kit. The
// test is cluster_test.go; readme_test.go checks that the README shows it
// as it is.
package clustertest
