//go:build !race

package wire_test

// raceEnabled reports a -race build, where allocation counts are not
// meaningful.
const raceEnabled = false
