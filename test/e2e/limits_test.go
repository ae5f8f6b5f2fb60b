package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
)

// Two mailgate instances sharing one route together never open a 4th
// connection to the mailbox: the simulator answers 432 4.3.2 to a 4th, and
// counts the most it saw at once. The route has no rate limit, so six
// workers compete hard for three slots.
func TestTwoInstancesNeverExceedThreeConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		r := &c.Routes[0]
		r.Type = config.RouteSMTP // no per-minute pacing: only the connection limit holds them back
		r.Limits = config.Limits{MaxConnections: 3}
		r.SendAs = nil                                 // any sender
		c.Delivery.IdleTimeout = 20 * time.Millisecond // connections come and go
	})
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	first := e.base
	e.start(gateway.RoleWorker) // a second instance: three more workers
	e.base = first
	var ids []string
	for i := 0; i < 60; i++ {
		ids = append(ids, e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "conn", "text": "x"}, nil))
	}
	for _, id := range ids {
		e.waitStatus(tok, id, "sent", 30*time.Second)
	}
	s := e.sim.Stats()
	if s.MaxConcurrent[relay] > 3 || s.Replies["4.3.2"] != 0 {
		t.Fatalf("max %d concurrent connections, %d × 432: the limit was broken", s.MaxConcurrent[relay], s.Replies["4.3.2"])
	}
	if s.MaxConcurrent[relay] < 2 {
		t.Fatalf("max %d concurrent connections: the test did not load the limit", s.MaxConcurrent[relay])
	}
	t.Logf("60 messages, 2 instances × 3 workers: %d connections, at most %d at once, 0 × 432", s.Connections, s.MaxConcurrent[relay])
}

// Two instances on an smtp-auth route keep Exchange's pace together:
// messages go out evenly spaced (30 a minute is one every 2 s), never
// faster, and the route reports its usage.
func TestTwoInstancesKeepThirtyAMinute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	first := e.base
	e.start(gateway.RoleWorker)
	e.base = first
	const n = 5
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "pace", "text": "x"}, nil))
	}
	for _, id := range ids {
		st := e.waitStatus(tok, id, "sent", 30*time.Second)
		if st["attempts"].(float64) != 1 {
			t.Fatalf("waiting for the limit counted as an attempt: %v", st)
		}
	}
	// Admissions are 2.03 s apart; arrivals at the server can bunch up a
	// little when one DATA is slower than the next, hence 1.5 s here. Without
	// the limiter the gaps are milliseconds.
	msgs := e.sim.Messages()
	for i := 1; i < len(msgs); i++ {
		if gap := msgs[i].At.Sub(msgs[i-1].At); gap < 1500*time.Millisecond {
			t.Fatalf("messages %d and %d only %v apart: faster than 30 a minute", i-1, i, gap)
		}
	}
	s := e.sim.Stats()
	if s.MaxMessagesInAnyMinute[relay] > 30 || s.OverMinuteLimit[relay] != 0 || s.Replies["4.3.2"] != 0 || s.MaxConcurrent[relay] > 3 {
		t.Fatalf("simulator counters: %+v", s)
	}
	r := e.do("GET", "/v1/routes", "", tok, nil, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"messages_last_minute":5`) {
		t.Fatalf("route usage: %s", r.body)
	}
}

// A worker-only process answers health probes and serves the delivery and
// queue metrics, so it can be run and watched as its own deployment.
func TestWorkerRoleServesHealthAndMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")
	id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "metrics", "text": "x"}, nil)
	e.start(gateway.RoleWorker)
	e.waitStatus(tok, id, "sent", 15*time.Second)
	get := func(path string) string {
		resp, err := http.Get(e.workerBase + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s on the worker: %v", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s on the worker: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	get("/healthz")
	get("/readyz")
	m := get("/metrics")
	for _, want := range []string{
		`mailgate_delivery_outcomes_total{outcome="sent",route="m365"} 1`,
		`mailgate_delivery_attempt_seconds_count{route="m365"} 1`,
		`mailgate_queue_messages{route="m365",state="waiting"} 0`,
		`mailgate_route_held{route="m365"} 0`,
		`mailgate_queue_up 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("worker metrics lack %q", want)
		}
	}
}
