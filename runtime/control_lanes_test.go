package runtime

import (
	"testing"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// TestControlLanes checks that controlLanes names the lane of every method
// of herd.v1.ControlService, and nothing else: a method added to the
// service without a lane would silently travel on the user lane.
func TestControlLanes(t *testing.T) {
	sd := herdv1.File_herd_v1_control_proto.Services().ByName("ControlService")
	if sd == nil {
		t.Fatal("no ControlService in control.proto")
	}
	methods := sd.Methods()
	seen := make(map[string]bool)
	for i := range methods.Len() {
		proc := "/" + string(sd.FullName()) + "/" + string(methods.Get(i).Name())
		seen[proc] = true
		if _, ok := controlLanes[proc]; !ok {
			t.Errorf("controlLanes has no lane for %s", proc)
		}
	}
	for proc := range controlLanes {
		if !seen[proc] {
			t.Errorf("controlLanes names %s, which ControlService does not have", proc)
		}
	}
}

// TestControlHandlersOnTheirLanes checks that registration gives every
// control handler of both ends the lane of its procedure.
func TestControlHandlersOnTheirLanes(t *testing.T) {
	var m Mux
	if err := registerControlServiceHandler(&m, primaryControl{}, withControlLanes()); err != nil {
		t.Fatal(err)
	}
	for proc, l := range controlLanes {
		h := m.Handler(proc)
		if h == nil {
			t.Errorf("%s: not registered", proc)
			continue
		}
		if h.lane != l {
			t.Errorf("%s: lane %d, want %d", proc, h.lane, l)
		}
	}
}
