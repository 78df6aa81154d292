//go:build unix

package runtime_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

var policies = []string{"rr", "shared", "reuseport"}

// listenCluster is a cluster of "ctl" workers driven by commands.
type listenCluster struct {
	*cluster
	mu        sync.Mutex
	listening map[uint64][]*herdv1.Address
}

func newListenCluster(t *testing.T, opts ...runtime.PrimaryOption) *listenCluster {
	t.Helper()
	return &listenCluster{cluster: newCluster(t, opts...), listening: make(map[uint64][]*herdv1.Address)}
}

// start forks n ctl workers and waits until they are online.
func (c *listenCluster) start(n int, opts ...runtime.ForkOption) []*runtime.Worker {
	c.t.Helper()
	var ws []*runtime.Worker
	for range n {
		var id uint64
		reg := runtime.WithRegister(func(r runtime.Registrar) error {
			return r.Register(runtime.NewUnaryHandler("/herd.v1.EventService/Listening",
				func(ctx context.Context, ev *herdv1.ListeningEvent) (*emptypb.Empty, error) {
					c.mu.Lock()
					c.listening[ev.GetWorker().GetId()] = append(c.listening[ev.GetWorker().GetId()], ev.GetAddress())
					c.mu.Unlock()
					return &emptypb.Empty{}, nil
				}))
		})
		w, err := c.p.Fork(context.Background(), append([]runtime.ForkOption{herdtest.ForkRole("ctl"), reg}, opts...)...)
		if err != nil {
			c.t.Fatal(err)
		}
		id = w.ID()
		ws = append(ws, w)
		_ = id
	}
	for _, w := range ws {
		c.rec.waitFor(fmt.Sprintf("online %d", w.ID()))
	}
	return ws
}

// do runs cmd in a ctl worker (ctlDo) and returns its answer.
func (c *listenCluster) do(w *runtime.Worker, cmd string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	got, err := ctlDo(ctx, testv1herd.NewTestServiceClient(w), cmd)
	if err != nil {
		c.t.Fatalf("worker %d %q: %v", w.ID(), cmd, err)
	}
	return got
}

// ctlDo makes the TestService call that cmd, the listen tests' shorthand,
// stands for, and returns the answer in the same shorthand:
//
//	listen NETWORK ADDRESS [OPTION...]  Listen: "ok INDEX ADDRESS POLICY" or "err NAME TEXT"
//	udp NETWORK ADDRESS [OPTION...]     Listen of a packet listener, the same
//	close INDEX                         CloseListener: "ok" or "err TEXT"
//	gate INDEX COUNT                    OpenGate: "ok"
//	conns                               Inspect: the connections the servers hold
//	stat                                Inspect: "fds=N goroutines=N"
//	ids                                 Inspect: "uid=N gid=N groups=[...]"
//	dumpable                            Inspect: "dumpable=N" or "err TEXT"
//	getenv NAME                         Inspect: "true "VALUE"" or "false """
//	getfds PID                          TakeFDs: "ok N unix=N" or "err TEXT"
//	symlink TARGET NAME, mkdir NAME     MakePath: "ok" or "err TEXT"
//
// The OPTIONs of listen and udp are policy=NAME, backlog=N, exclusive,
// fd=N, fdname=NAME, mode=OCTAL, v6only, maxconns=N, tls, gate and
// acceptors=N (ListenRequest's fields). Only a failed call is an error.
func ctlDo(ctx context.Context, client testv1herd.TestServiceClient, cmd string) (string, error) {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return "", fmt.Errorf("empty command")
	}
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	num := func(i int) uint64 {
		n, _ := strconv.ParseUint(arg(i), 10, 64)
		return n
	}
	answer := func(err error) (string, error) {
		if err != nil {
			return "err " + err.Error(), nil
		}
		return "ok", nil
	}
	switch f[0] {
	case "listen", "udp":
		req := &testv1.ListenRequest{Network: arg(1), Address: arg(2), Packet: f[0] == "udp"}
		for _, o := range f[min(3, len(f)):] {
			k, v, _ := strings.Cut(o, "=")
			n, _ := strconv.Atoi(v)
			switch k {
			case "policy":
				req.Policy = v
			case "backlog":
				req.Backlog = int32(n)
			case "exclusive":
				req.Exclusive = true
			case "fd":
				req.UseFd, req.Fd = true, int32(n)
			case "fdname":
				req.FdName = v
			case "mode":
				m, _ := strconv.ParseUint(v, 8, 32)
				req.UnixMode = uint32(m)
			case "v6only":
				req.Ipv6Only = true
			case "maxconns":
				req.MaxConnections = int32(n)
			case "tls":
				req.Tls = true
			case "gate":
				req.Gate = true
			case "acceptors":
				req.Acceptors = int32(n)
			default:
				return "", fmt.Errorf("unknown option %q", o)
			}
		}
		res, err := client.Listen(ctx, req)
		if err != nil {
			return "", err
		}
		if res.GetErrorName() != "" {
			return "err " + res.GetErrorName() + " " + res.GetError(), nil
		}
		return fmt.Sprintf("ok %d %s %s", res.GetIndex(), res.GetAddress(), res.GetPolicy()), nil
	case "close":
		_, err := client.CloseListener(ctx, &testv1.CloseListenerRequest{Index: uint32(num(1))})
		return answer(err)
	case "gate":
		if _, err := client.OpenGate(ctx, &testv1.OpenGateRequest{Index: uint32(num(1)), Count: uint32(num(2))}); err != nil {
			return "", err
		}
		return "ok", nil
	case "conns", "stat", "ids", "dumpable", "getenv":
		res, err := client.Inspect(ctx, &testv1.InspectRequest{Getenv: arg(1)})
		if err != nil {
			return "", err
		}
		switch f[0] {
		case "conns":
			return fmt.Sprint(res.GetConnections()), nil
		case "stat":
			return fmt.Sprintf("fds=%d goroutines=%d", res.GetFds(), res.GetGoroutines()), nil
		case "ids":
			return fmt.Sprintf("uid=%d gid=%d groups=%v", res.GetUid(), res.GetGid(), res.GetGroups()), nil
		case "dumpable":
			if e := res.GetDumpableError(); e != "" {
				return "err " + e, nil
			}
			return fmt.Sprintf("dumpable=%d", res.GetDumpable()), nil
		}
		return fmt.Sprintf("%t %q", res.GetEnvSet(), res.GetEnvValue()), nil
	case "getfds":
		res, err := client.TakeFDs(ctx, &testv1.TakeFDsRequest{Pid: int32(num(1))})
		if err != nil {
			return "", err
		}
		if res.GetTaken() > 0 {
			return fmt.Sprintf("ok %d unix=%d", res.GetTaken(), res.GetUnixSockets()), nil
		}
		return "err " + res.GetError(), nil
	case "symlink":
		_, err := client.MakePath(ctx, &testv1.MakePathRequest{SymlinkTarget: arg(1), Name: arg(2)})
		return answer(err)
	case "mkdir":
		_, err := client.MakePath(ctx, &testv1.MakePathRequest{Name: arg(1)})
		return answer(err)
	}
	return "", fmt.Errorf("unknown command %q", cmd)
}

// listen runs a listen command that must succeed and returns the address
// and the policy applied.
func (c *listenCluster) listen(w *runtime.Worker, cmd string) (addr, policy string) {
	c.t.Helper()
	got := c.do(w, cmd)
	f := strings.Fields(got)
	if len(f) != 4 || f[0] != "ok" {
		c.t.Fatalf("worker %d %q: %s", w.ID(), cmd, got)
	}
	return f[2], f[3]
}

// rawGet makes one HTTP/1.1 request on a new connection (Connection:
// close) and returns the body of a 200 response.
func rawGet(network, addr, path string) (string, error) {
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

func mustGet(t *testing.T, network, addr string) string {
	t.Helper()
	body, err := rawGet(network, addr, "/")
	if err != nil {
		t.Fatalf("GET %s: %v", addr, err)
	}
	return body
}

// collect makes n sequential requests and counts the answers per worker.
func collect(t *testing.T, network, addr string, n int) map[string]int {
	t.Helper()
	seen := make(map[string]int)
	for range n {
		seen[mustGet(t, network, addr)]++
	}
	return seen
}

func TestListenSharesPortPerIndex(t *testing.T) {
	for _, pol := range policies {
		t.Run(pol, func(t *testing.T) {
			c := newListenCluster(t)
			ws := c.start(2)
			var first, second [2]string
			for i, w := range ws {
				a, p := c.listen(w, "listen tcp 127.0.0.1:0 policy="+pol)
				if want := pol; reusePortExpected(pol) && p != want {
					t.Errorf("policy %s, want %s", p, want)
				}
				first[i] = a
				second[i], _ = c.listen(w, "listen tcp 127.0.0.1:0 policy="+pol)
			}
			if first[0] != first[1] || second[0] != second[1] || first[0] == second[0] {
				t.Fatalf(":0 listens: first %v, second %v; want one port per index", first, second)
			}
			for _, a := range []string{first[0], second[0]} {
				var seen map[string]int
				if pol == "rr" {
					// Round robin goes to the next worker that asked for a
					// connection: once both have asked on both listeners
					// (credit 1 each), 20 connections alternate exactly. A
					// worker whose new request is still on its way is
					// passed over and owed a turn (pickLocked), which can
					// leave 11/9 after 20 on a loaded machine.
					seen = make(map[string]int)
					for range 20 {
						for _, w := range ws {
							waitRR(t, w, "asked on both listeners", func(held, credit, _ int) bool { return held == 0 && credit >= 2 })
						}
						seen[mustGet(t, "tcp", a)]++
					}
				} else {
					seen = collect(t, "tcp", a, 20)
				}
				if pol == "rr" && (seen["w1"] != 10 || seen["w2"] != 10) {
					t.Errorf("%s: round robin answered %v", a, seen)
				}
				if seen["w1"]+seen["w2"] != 20 {
					t.Errorf("%s: answers %v", a, seen)
				}
			}
			// Every worker listening: the state and the events, with the
			// real port.
			for _, w := range ws {
				if w.State() != runtime.StateListening {
					t.Errorf("worker %d state %v", w.ID(), w.State())
				}
				c.mu.Lock()
				evs := c.listening[w.ID()]
				c.mu.Unlock()
				_, port, _ := net.SplitHostPort(first[0])
				if len(evs) != 2 || fmt.Sprint(evs[0].GetPort()) != port || evs[0].GetAddress() != "127.0.0.1" || evs[0].GetNetwork() != "tcp" || evs[0].GetFd() != -1 {
					t.Errorf("worker %d listening events %v", w.ID(), evs)
				}
				c.rec.waitFor(fmt.Sprintf("listening %d 127.0.0.1", w.ID()))
			}
		})
	}
}

func reusePortExpected(pol string) bool { return pol != "reuseport" || reusePortSupported }

func TestListenHTTPKeepAliveAndClose(t *testing.T) {
	for _, pol := range policies {
		t.Run(pol, func(t *testing.T) {
			c := newListenCluster(t)
			ws := c.start(2)
			var addr string
			for _, w := range ws {
				addr, _ = c.listen(w, "listen tcp 127.0.0.1:0 policy="+pol)
			}
			ka := &http.Transport{MaxIdleConnsPerHost: 1}
			t.Cleanup(ka.CloseIdleConnections)
			for _, tr := range []*http.Transport{ka, {DisableKeepAlives: true}} {
				client := &http.Client{Transport: tr, Timeout: waitLimit}
				var owner string
				for i := range 50 {
					resp, err := client.Get("http://" + addr + "/")
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || (string(b) != "w1" && string(b) != "w2") {
						t.Fatalf("response %d %q", resp.StatusCode, b)
					}
					// A keep-alive connection stays with one worker.
					if tr == ka {
						if i == 0 {
							owner = string(b)
						} else if string(b) != owner {
							t.Fatalf("keep-alive request %d went to %s, connection owned by %s", i, b, owner)
						}
					}
				}
			}
		})
	}
}
