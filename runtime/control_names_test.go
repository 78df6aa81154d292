package runtime

// Short names of the generated control procedure constants, for the tests.
const (
	controlHelloProcedure         = controlServiceHelloProcedure
	controlDisconnectProcedure    = controlServiceDisconnectProcedure
	controlListenProcedure        = controlServiceListenProcedure
	controlCloseListenerProcedure = controlServiceCloseListenerProcedure
	controlHandoffProcedure       = controlServiceHandoffProcedure
	controlAcceptedProcedure      = controlServiceAcceptedProcedure
	controlListeningProcedure     = controlServiceListeningProcedure
	controlStopSignalProcedure    = controlServiceStopSignalProcedure
	controlCreditProcedure        = controlServiceCreditProcedure
	controlReadyProcedure         = controlServiceReadyProcedure
	controlRejectedProcedure      = controlServiceRejectedProcedure
	controlAdoptProcedure         = controlServiceAdoptProcedure
)
