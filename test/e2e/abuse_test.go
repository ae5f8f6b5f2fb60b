package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/test/testwait"
)

// stalledRaw opens a raw submission that declares size bytes, sends only
// its first line of body, and then waits. It returns the connection (to
// read the answer from) once the request is on the wire.
func (e *env) stalledRaw(tok string, size int) net.Conn {
	e.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST /v1/messages/raw HTTP/1.1\r\nHost: mailgate\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: message/rfc822\r\nContent-Length: %d\r\n\r\nFrom: alerts@alerts.contoso.com\r\n", tok, size)
	if _, err := conn.Write([]byte(head)); err != nil {
		e.t.Fatal(err)
	}
	return conn
}

// answerOf reads the status line of the answer on conn, failing after
// timeout.
func answerOf(t *testing.T, conn net.Conn, timeout time.Duration) int {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled request: %v", err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

// One app whose clients stall with large declared bodies holds at most
// its share of the body budget: its further requests get 429, every other
// app's submissions, small and large, are accepted meanwhile, and a stalled
// body is cut off with 408 once it falls below the minimum rate.
func TestStalledBodiesOfOneAppDoNotStarveOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.API = config.API{MaxInFlightBytes: 4 << 20, MaxInFlightBytesPerApp: 1 << 20,
			MinBodyRate: 64 << 10, BodyRateGrace: 3 * time.Second}
		c.Apps[0].MaxMessageBytes = 1 << 20
		c.Apps[1].Recipients.MaxPerMessage = 10
	})
	e.start("all")
	greedy, polite := e.token("monitoring"), e.token("billing")

	// The first stalled body fits the greedy app's share; the next four
	// do not.
	first := e.stalledRaw(greedy, 700<<10)
	testwait.Until(t, 10*time.Second, func() bool {
		return strings.Contains(e.metrics(), `mailgate_api_body_budget_in_use_bytes{app="monitoring"} 716800`)
	}, "the first stalled request to hold its reservation")
	var over []net.Conn
	for range 4 {
		over = append(over, e.stalledRaw(greedy, 700<<10))
	}
	for i, c := range over {
		if got := answerOf(t, c, 10*time.Second); got != http.StatusTooManyRequests {
			t.Errorf("stalled request %d over the app's share: %d, want 429", i+2, got)
		}
	}

	// Meanwhile the other app is served, small and large (2.5 MB, more
	// than the greedy app's whole share).
	small := []byte("From: helpdesk@contoso.com\r\nTo: ops@contoso.com\r\nSubject: small\r\n\r\nhello\r\n")
	large := []byte("From: helpdesk@contoso.com\r\nTo: ops@contoso.com\r\nSubject: large\r\n\r\n" +
		strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n", 34000))
	for name, body := range map[string][]byte{"small": small, "large": large} {
		r := e.do("POST", "/v1/messages/raw", "message/rfc822", polite, body, nil)
		if r.status != http.StatusAccepted {
			t.Fatalf("%s submission of another app while one stalls: %d %s", name, r.status, r.body)
		}
	}

	// The stalled body is cut off, and its share is free again.
	if got := answerOf(t, first, 30*time.Second); got != http.StatusRequestTimeout {
		t.Fatalf("stalled body: %d, want 408", got)
	}
	testwait.Until(t, 10*time.Second, func() bool {
		return strings.Contains(e.metrics(), `mailgate_api_body_budget_in_use_bytes{app="monitoring"} 0`)
	}, "the stalled request's reservation to be given back")
	m := e.metrics()
	for _, want := range []string{
		`mailgate_api_body_budget_refusals_total{app="monitoring",reason="app_share"} 4`,
		`mailgate_api_slow_bodies_total{app="monitoring"} 1`,
		`mailgate_api_body_budget_bytes{scope="app"} 1.048576e+06`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	msg := []byte("From: alerts@alerts.contoso.com\r\nTo: ops@contoso.com\r\nSubject: after\r\n\r\nback\r\n")
	if r := e.do("POST", "/v1/messages/raw", "message/rfc822", greedy, msg, nil); r.status != http.StatusAccepted {
		t.Fatalf("the greedy app after its stalled body was cut off: %d %s", r.status, r.body)
	}
}

// metrics scrapes the API's /metrics.
func (e *env) metrics() string {
	e.t.Helper()
	resp, err := http.Get(e.base + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		e.t.Fatal(err)
	}
	return b.String()
}
