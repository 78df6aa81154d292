package runtime

// ProcessRSS, ProcessState and ParseVmRSS expose the /proc
// readers to tests.
var (
	ParseCounter      = parseCounter
	OOMFileFromCgroup = oomFileFromCgroup
	ProcessRSS        = processRSS
	ProcessState      = processState
	ParseVmRSS        = parseVmRSS
)
