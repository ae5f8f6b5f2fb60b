package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
)

// routeQueue reads the caller's route's queue from GET /v1/routes.
func (e *env) routeQueue(tok string) map[string]any {
	e.t.Helper()
	r := e.do("GET", "/v1/routes", "", tok, nil, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("routes: %d %s", r.status, r.body)
	}
	var out struct {
		Routes []struct {
			Queue map[string]any `json:"queue"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || len(out.Routes) != 1 {
		e.t.Fatalf("routes: %v %s", err, r.body)
	}
	return out.Routes[0].Queue
}

// storedMessages counts the message hashes in Redis.
func (e *env) storedMessages() int {
	e.t.Helper()
	keys, err := e.redis.Client().Keys(context.Background(), "mailgate:*msg:*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return len(keys)
}

// A route over its waiting limit answers 503 queue_full with Retry-After and
// stores nothing, whichever app asks; once the workers drain it, it takes
// messages again.
func TestRouteQueueFullThenDrains(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.Routes[0].Queue = config.QueueLimit{MaxMessages: 2, MaxBytes: 1 << 20}
		for i := range c.Apps {
			c.Apps[i].Queue = config.QueueLimit{MaxMessages: 100, MaxBytes: 1 << 20}
		}
	})
	e.start(gateway.RoleAPI) // no workers yet: nothing leaves the queue
	mon, bil := e.token("monitoring"), e.token("billing")
	msg := map[string]any{"to": "ops@contoso.com", "subject": "full", "text": "x"}
	first := e.submitJSON(mon, msg, nil)
	e.submitJSON(bil, msg, nil)

	for _, tok := range []string{mon, bil} {
		b, err := json.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		r := e.do("POST", "/v1/messages", "application/json", tok, b, map[string]string{"Idempotency-Key": "again"})
		p := r.json(t)
		if r.status != http.StatusServiceUnavailable || p["code"] != "queue_full" || r.header.Get("Retry-After") != "60" {
			t.Fatalf("over the route's limit: %d %s, Retry-After %q; want 503 queue_full, 60", r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	if n := e.storedMessages(); n != 2 {
		t.Fatalf("%d messages stored, want the 2 accepted", n)
	}
	q := e.routeQueue(mon)
	if q["full"] != true || q["waiting"] != float64(2) || q["max_messages"] != float64(2) {
		t.Fatalf("routes while full: %v", q)
	}
	m := e.metrics()
	for _, want := range []string{`mailgate_queue_full{route="m365"} 1`, `mailgate_queue_limit{route="m365",unit="messages"} 2`,
		`mailgate_submissions_total{app="billing",result="queue_full"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	e.start(gateway.RoleWorker)
	e.waitStatus(mon, first, "sent", 30*time.Second)
	// The refused Idempotency-Key was not used up by the refusal.
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/v1/messages", "application/json", mon, b, map[string]string{"Idempotency-Key": "again"})
	if r.status != http.StatusAccepted {
		t.Fatalf("after the queue drained: %d %s, want 202", r.status, r.body)
	}
}

// An app over its share of the route's queue gets 429 app_queue_full; the
// route's other apps are still served.
func TestAppQueueShareFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.Routes[0].Queue = config.QueueLimit{MaxMessages: 100, MaxBytes: 1 << 20}
		c.Apps[0].Queue = config.QueueLimit{MaxMessages: 1, MaxBytes: 1 << 20} // monitoring
	})
	e.start(gateway.RoleAPI)
	mon, bil := e.token("monitoring"), e.token("billing")
	msg := map[string]any{"to": "ops@contoso.com", "subject": "share", "text": "x"}
	e.submitJSON(mon, msg, nil)
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/v1/messages", "application/json", mon, b, nil)
	p := r.json(t)
	if r.status != http.StatusTooManyRequests || p["code"] != "app_queue_full" || r.header.Get("Retry-After") != "60" {
		t.Fatalf("over the app's share: %d %s, Retry-After %q; want 429 app_queue_full, 60", r.status, r.body, r.header.Get("Retry-After"))
	}
	e.submitJSON(bil, msg, nil)
	if n := e.storedMessages(); n != 2 {
		t.Fatalf("%d messages stored, want 2", n)
	}
	q := e.routeQueue(mon)
	app, _ := q["app"].(map[string]any)
	if q["full"] != false || app["full"] != true || app["messages"] != float64(1) || app["max_messages"] != float64(1) {
		t.Fatalf("routes for the app over its share: %v", q)
	}
}
