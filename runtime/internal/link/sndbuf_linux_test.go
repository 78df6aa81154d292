package link

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSocketSendBuffer: a link asks for socketSendBuffer, which Linux
// doubles and caps at net.core.wmem_max.
func TestSocketSendBuffer(t *testing.T) {
	checkLeaks(t)
	b, err := os.ReadFile("/proc/sys/net/core/wmem_max")
	if err != nil {
		t.Fatal(err)
	}
	wmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := linkPair(t, discard, discard)
	var got int
	var gerr error
	if err := a.rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if want := 2 * min(socketSendBuffer, wmemMax); got != want {
		t.Errorf("SO_SNDBUF = %d, want %d (wmem_max %d)", got, want, wmemMax)
	}
}
