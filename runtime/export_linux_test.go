package runtime

// ParseCounter, OOMFileFromCgroup, ProcessRSS and ProcessState expose
// the /proc readers to tests.
var (
	ParseCounter      = parseCounter
	OOMFileFromCgroup = oomFileFromCgroup
	ProcessRSS        = processRSS
	ProcessState      = processState
)
