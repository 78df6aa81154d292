package runtime

import (
	"reflect"
	"testing"
)

// TestBroadcastIsSendOnly: what Primary.Broadcast returns cannot be used
// where request/response calls are made (a ClientConn, so not with a
// generated request/response client): the mistake of calling a broadcast
// and waiting for one response is a compile error, not a run-time
// CodeUnimplemented.
func TestBroadcastIsSendOnly(t *testing.T) {
	clientConn := reflect.TypeFor[ClientConn]()
	declared := reflect.TypeOf((*Primary).Broadcast).Out(0)
	if declared.Implements(clientConn) {
		t.Errorf("Primary.Broadcast returns %v, which implements ClientConn", declared)
	}
	if got := reflect.TypeOf(NewPrimary().Broadcast()); got.Implements(clientConn) {
		t.Errorf("Primary.Broadcast's value, a %v, implements ClientConn", got)
	}
}
