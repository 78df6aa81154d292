//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// yamlBlock returns the lines indented under the first line whose trimmed
// text is key+":" (the block of a YAML mapping key), trimmed.
func yamlBlock(lines []string, key string) []string {
	for i, l := range lines {
		if strings.TrimSpace(l) != key+":" {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		var block []string
		for _, m := range lines[i+1:] {
			if strings.TrimSpace(m) == "" {
				continue
			}
			if len(m)-len(strings.TrimLeft(m, " ")) <= indent {
				break
			}
			block = append(block, strings.TrimSpace(m))
		}
		return block
	}
	return nil
}

// yamlValue returns the value of the first "key: value" among lines.
func yamlValue(lines []string, key string) (string, bool) {
	for _, l := range lines {
		l = strings.TrimPrefix(strings.TrimSpace(l), "- ")
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// portOf returns the port of a listening address like ":8080".
func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return port
}

// deploymentArgs reads examples/kubernetes/deployment.yaml and checks what
// a rollout without a lost request needs; it returns the container's
// arguments.
func deploymentArgs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../kubernetes/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	raw, ok := yamlValue(lines, "args")
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); !ok || err != nil {
		t.Fatalf("deployment.yaml: args %q must be a flow sequence of strings: %v", raw, err)
	}
	o, err := parse(args, io.Discard)
	if err != nil {
		t.Fatalf("deployment.yaml: args %q: %v", args, err)
	}
	if o.drain <= 0 || o.health == "" {
		t.Errorf("deployment.yaml: args %q: want -drain-delay and -health", args)
	}
	graceS, _ := yamlValue(lines, "terminationGracePeriodSeconds")
	grace, err := strconv.Atoi(graceS)
	if err != nil {
		t.Fatalf("deployment.yaml: terminationGracePeriodSeconds %q", graceS)
	}
	if need := o.drain + runtime.DefaultGracefulTimeout + runtime.DefaultTermTimeout; time.Duration(grace)*time.Second < need {
		t.Errorf("terminationGracePeriodSeconds %d: below drain delay + graceful timeout + term timeout (%v)", grace, need)
	}
	// The named ports are the flags' ports, and readiness is probed on
	// -health's /readyz.
	ports := map[string]string{}
	for i, l := range lines {
		if name, ok := yamlValue([]string{l}, "name"); ok && i+1 < len(lines) {
			if p, ok := yamlValue(lines[i+1:i+2], "containerPort"); ok {
				ports[name] = p
			}
		}
	}
	if ports["http"] != portOf(t, o.addr) || ports["health"] != portOf(t, o.health) {
		t.Errorf("deployment.yaml: containerPorts %v, want http %s and health %s", ports, portOf(t, o.addr), portOf(t, o.health))
	}
	probe := yamlBlock(lines, "readinessProbe")
	path, _ := yamlValue(probe, "path")
	port, _ := yamlValue(probe, "port")
	if path != "/readyz" || ports[port] != portOf(t, o.health) {
		t.Errorf("deployment.yaml: readinessProbe %q, want httpGet /readyz on the health port", probe)
	}
	period, _ := yamlValue(probe, "periodSeconds")
	failures, _ := yamlValue(probe, "failureThreshold")
	p, _ := strconv.Atoi(period)
	f, _ := strconv.Atoi(failures)
	if p <= 0 || f <= 0 || time.Duration(p*f)*time.Second >= o.drain {
		t.Errorf("deployment.yaml: readiness seen failing after %d x %d s, not within the drain delay %v", p, f, o.drain)
	}
	if v, _ := yamlValue(lines, "runAsNonRoot"); v != "true" {
		t.Error("deployment.yaml: runAsNonRoot is not true")
	}
	if _, ok := yamlValue(lines, "preStop"); ok {
		t.Error("deployment.yaml: a preStop hook; the drain delay makes it unneeded")
	}
	return args
}

// TestKubernetesFiles checks examples/kubernetes: the Deployment (above),
// and a multi-stage Dockerfile that builds this example, static, into an
// image whose user is not root and whose default arguments the example
// accepts, exposing the ports they name.
func TestKubernetesFiles(t *testing.T) {
	deploymentArgs(t)
	b, err := os.ReadFile("../kubernetes/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from, build, user, entry, cmd, expose string
	stages := 0
	for _, l := range strings.Split(string(b), "\n") {
		word, rest, _ := strings.Cut(strings.TrimSpace(l), " ")
		switch word {
		case "FROM":
			stages++
			from = rest
		case "RUN":
			if strings.Contains(rest, "go build") {
				build = rest
			}
		case "USER":
			user = rest
		case "ENTRYPOINT":
			entry = rest
		case "CMD":
			cmd = rest
		case "EXPOSE":
			expose = rest
		}
	}
	if stages < 2 || !strings.Contains(from, "static") {
		t.Errorf("Dockerfile: %d stages, last FROM %q; want a build stage and a static final image", stages, from)
	}
	f := strings.Fields(build)
	if !slices.Contains(f, "CGO_ENABLED=0") || len(f) == 0 {
		t.Fatalf("Dockerfile: go build %q is not static (CGO_ENABLED=0)", build)
	}
	// The package it builds, from the repository's root, is this example.
	pkg := f[len(f)-1]
	here, _ := filepath.Abs(".")
	there, _ := filepath.Abs(filepath.Join("../..", pkg))
	if here != there {
		t.Errorf("Dockerfile builds %s (%s), not this example (%s)", pkg, there, here)
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("Dockerfile: USER %q: the primary and its workers must not run as root", user)
	}
	var ep, args []string
	if err := json.Unmarshal([]byte(entry), &ep); err != nil || len(ep) != 1 || filepath.Base(ep[0]) != "counter" {
		t.Errorf("Dockerfile: ENTRYPOINT %q, want the counter binary (exec form)", entry)
	}
	if err := json.Unmarshal([]byte(cmd), &args); err != nil {
		t.Fatalf("Dockerfile: CMD %q: %v", cmd, err)
	}
	o, err := parse(args, io.Discard)
	if err != nil {
		t.Fatalf("Dockerfile: CMD %q: %v", args, err)
	}
	for _, addr := range []string{o.addr, o.health} {
		if p := portOf(t, addr); !slices.Contains(strings.Fields(expose), p) {
			t.Errorf("Dockerfile: EXPOSE %q lacks port %s", expose, p)
		}
		if n, _ := strconv.Atoi(portOf(t, addr)); n < 1024 {
			t.Errorf("Dockerfile: port %d needs a privilege the image's user does not have", n)
		}
	}
}

// TestKubernetesDrain runs the example with the Deployment's arguments (on
// loopback ports, and a shorter drain delay) and does what Kubernetes does
// on a pod's deletion: SIGTERM to the primary. From then on /readyz answers
// 503 while new connections are still served during the drain delay; the
// request in flight finishes, and the primary exits 0.
func TestKubernetesDrain(t *testing.T) {
	args := deploymentArgs(t)
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-addr", "-health":
			args[i+1] = "127.0.0.1:0"
		case "-drain-delay":
			args[i+1] = "3s"
		}
	}
	herdtest.CheckLeaks(t)
	e := start(t, args...)
	health := strings.TrimPrefix(e.WaitLine("health addr="), "health addr=")
	addr := strings.TrimPrefix(e.WaitLine("listening addr="), "listening addr=")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: herdtest.DefaultTimeout}
	// readyz returns /readyz's status and body (0 and the error when the
	// primary no longer answers).
	readyz := func() (int, string) {
		res, err := client.Get("http://" + health + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	// The pool is ready once every worker is; /readyz says so, and says
	// how many are until then.
	herdtest.WaitUntil(t, "GET /readyz says ready", func() bool {
		code, body := readyz()
		if code != http.StatusOK && (code != http.StatusServiceUnavailable || !strings.Contains(body, "workers ready")) {
			t.Fatalf("GET /readyz: %d %q", code, body)
		}
		return code == http.StatusOK
	})
	get(t, client, "http://"+addr+"/")

	slow := make(chan error, 1)
	go func() {
		res, err := client.Get("http://" + addr + "/?delay=1s")
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", res.StatusCode)
			}
		}
		slow <- err
	}()
	// Wait until the slow request has reached a worker: /stats counts it,
	// the GET / before it, and every /stats call itself.
	calls := 0
	herdtest.WaitUntil(t, "the slow request reached a worker", func() bool {
		calls++
		var n int
		fmt.Sscanf(get(t, client, "http://"+addr+"/stats"), "total=%d", &n)
		return n > calls+1
	})

	e.Signal(syscall.SIGTERM)
	var code int
	var body string
	herdtest.WaitUntil(t, "/readyz no longer 200 after SIGTERM", func() bool {
		code, body = readyz()
		return code != http.StatusOK
	})
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "draining: ") {
		t.Errorf("GET /readyz after SIGTERM: %d %q, want 503 draining", code, body)
	}
	// A new connection during the drain is served. (The drain delay runs
	// in real time here: the request counts only if /readyz still says
	// draining after it; TestPoolDrainDelay in runtime checks this on a
	// clock of its own.)
	res, err := client.Get("http://" + addr + "/")
	if err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	if c, b := readyz(); c == http.StatusServiceUnavailable && strings.HasPrefix(b, "draining: ") {
		if err != nil || res.StatusCode != http.StatusOK {
			t.Errorf("a new connection during the drain: %v", err)
		}
	} else {
		t.Logf("the drain delay ended before the check: %d %q", c, b)
	}
	if err := herdtest.Receive(t, slow, "the request in flight"); err != nil {
		t.Errorf("the request in flight at SIGTERM: %v", err)
	}
	e.WaitLine("total=")
	e.WaitExit(0)
}
