package herdhttp_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// client is a strict HTTP/1.1 client for the tests: it never retries, so a
// request it wrote and got no answer for is a failure, as wrk counts it. On
// keep-alive it reuses its connection until a response says
// "Connection: close" (then it connects again); otherwise it sends
// "Connection: close" on a new connection per request.
type client struct {
	addr      string
	keepAlive bool
	conn      net.Conn
	br        *bufio.Reader
	closes    int         // responses that ended a kept connection
	fresh     bool        // the last request went on a connection dialed for it
	tls       *tls.Config // dial TLS with it, when set
}

// answer is what a request got.
type answer struct {
	status int
	close  bool // the server said Connection: close
	body   string
}

// get sends GET path and reads the answer.
func (c *client) get(path string) (answer, error) {
	c.fresh = c.conn == nil
	if c.conn == nil {
		if err := c.dial(); err != nil {
			return answer{}, fmt.Errorf("dial: %w", err)
		}
	}
	if err := c.conn.SetDeadline(time.Now().Add(waitLimit)); err != nil {
		return answer{}, err
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: herdhttp.test\r\n"
	if !c.keepAlive {
		req += "Connection: close\r\n"
	}
	if _, err := io.WriteString(c.conn, req+"\r\n"); err != nil {
		c.drop()
		return answer{}, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.drop()
		return answer{}, fmt.Errorf("read: %w", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.drop()
		return answer{}, fmt.Errorf("read body: %w", err)
	}
	a := answer{status: resp.StatusCode, close: resp.Close, body: string(b)}
	if a.close || !c.keepAlive {
		if c.keepAlive {
			c.closes++
		}
		c.drop()
	}
	if a.status != http.StatusOK {
		return a, fmt.Errorf("status %d", a.status)
	}
	return a, nil
}

func (c *client) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// dial connects without sending anything.
func (c *client) dial() error {
	var conn net.Conn
	var err error
	if c.tls != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: waitLimit}, "tcp", c.addr, c.tls)
	} else {
		conn, err = net.DialTimeout("tcp", c.addr, waitLimit)
	}
	if err != nil {
		return err
	}
	c.conn, c.br = conn, bufio.NewReader(conn)
	return nil
}
