//go:build !unix

package runtime

// acceptedBy is 0: there are no cluster listeners here.
func (pt *portTable) acceptedBy(*Worker) uint64 { return 0 }
