package clustertest

import (
	"os"
	"strings"
	"testing"
)

// TestInREADME keeps README.md's "Testing a cluster program" in step with
// cluster_test.go: the README shows the file verbatim.
func TestInREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Testing a cluster program\n")
	if !ok {
		t.Fatal(`README.md has no section "## Testing a cluster program"`)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	code, err := os.ReadFile("cluster_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(section, "\n```go\n"+string(code)+"```\n") {
		t.Error("the README does not show examples/clustertest/cluster_test.go as it is")
	}
}
