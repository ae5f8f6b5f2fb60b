package e2e

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/exosim"
)

// adminToken issues an operator token.
func (e *env) adminToken() string {
	raw, _, err := e.tokens.Issue("ops", token.ScopeAdmin, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

// failedIDs lists the route's failed messages through the admin API.
func (e *env) failedIDs(admin string) []string {
	e.t.Helper()
	r := e.do("GET", "/v1/admin/routes/m365/failed", "", admin, nil, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("list failed: %d %s", r.status, r.body)
	}
	var out []string
	for _, m := range r.json(e.t)["messages"].([]any) {
		out = append(out, m.(map[string]any)["id"].(string))
	}
	return out
}

// failOnce submits a message that Exchange refuses for good, and waits
// until it has failed.
func (e *env) failOnce(tok, subject string) string {
	e.t.Helper()
	e.sim.Script(exosim.Reply{Stage: exosim.StageData, Code: 554, Enhanced: "5.6.0", Text: "Corrupt message content"})
	id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": subject, "text": "x"}, nil)
	e.waitStatus(tok, id, "failed", 10*time.Second)
	return id
}

// An operator lists a message Exchange refused, requeues it, and it is
// delivered with its history kept.
func TestFailedMessageIsListedRequeuedAndDelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAll)
	tok, admin := e.token("monitoring"), e.adminToken()
	id := e.failOnce(tok, "second chance")

	r := e.do("GET", "/v1/admin/routes/m365/failed", "", admin, nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("list failed: %d %s", r.status, r.body)
	}
	msgs := r.json(t)["messages"].([]any)
	if len(msgs) != 1 {
		t.Fatalf("listed %s", r.body)
	}
	m := msgs[0].(map[string]any)
	lr, _ := m["last_response"].(map[string]any)
	if m["id"] != id || m["app"] != "monitoring" || m["status"] != "failed" || m["subject"] != "second chance" ||
		lr == nil || lr["code"].(float64) != 554 {
		t.Fatalf("listed message %v", m)
	}

	r = e.do("POST", "/v1/admin/routes/m365/failed/"+id+"/requeue", "", admin, nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("requeue: %d %s", r.status, r.body)
	}
	if m := r.json(t); m["id"] != id || m["app"] != "monitoring" {
		t.Fatalf("requeue answer %v", m)
	}
	st := e.waitStatus(tok, id, "sent", 10*time.Second)
	if st["attempts"].(float64) != 2 || !slices.Equal(events(st), []string{"queued", "failed", "queued", "sent"}) {
		t.Fatalf("status after requeue %v", st)
	}
	if msgs := e.sim.WaitForMessages(t, 1, 5*time.Second); len(msgs) != 1 {
		t.Fatalf("delivered %d", len(msgs))
	}
	if ids := e.failedIDs(admin); len(ids) != 0 {
		t.Fatalf("still listed as failed: %v", ids)
	}
	// A message that is not failed (any more) cannot be requeued.
	r = e.do("POST", "/v1/admin/routes/m365/failed/"+id+"/requeue", "", admin, nil, nil)
	if r.status != http.StatusNotFound || r.json(t)["code"] != "not_found" {
		t.Fatalf("requeue of a sent message: %d %s", r.status, r.body)
	}
}

// Several failed messages are listed newest first, page by page, and
// requeued with one request.
func TestBulkRequeueAndPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAll)
	tok, admin := e.token("monitoring"), e.adminToken()
	var failed []string
	for _, s := range []string{"a", "b", "c"} {
		failed = append(failed, e.failOnce(tok, s))
	}
	ids := e.failedIDs(admin)
	if want := []string{failed[2], failed[1], failed[0]}; !slices.Equal(ids, want) {
		t.Fatalf("listed %v, want newest first of %v", ids, failed)
	}
	// Pages: one at a time, following next_cursor.
	var paged []string
	for q := "?limit=1"; ; {
		r := e.do("GET", "/v1/admin/routes/m365/failed"+q, "", admin, nil, nil)
		doc := r.json(t)
		for _, m := range doc["messages"].([]any) {
			paged = append(paged, m.(map[string]any)["id"].(string))
		}
		next, _ := doc["next_cursor"].(string)
		if next == "" || len(paged) > 3 {
			break
		}
		q = "?limit=1&cursor=" + next
	}
	if !slices.Equal(paged, ids) {
		t.Fatalf("paged %v, want %v", paged, ids)
	}

	r := e.do("POST", "/v1/admin/routes/m365/failed/requeue", "", admin, nil, nil)
	if r.status != http.StatusOK || r.json(t)["requeued"].(float64) != 3 {
		t.Fatalf("bulk requeue: %d %s", r.status, r.body)
	}
	for _, id := range failed {
		e.waitStatus(tok, id, "sent", 10*time.Second)
	}
	if n := len(e.sim.Messages()); n != 3 {
		t.Fatalf("delivered %d, want the 3 requeued", n)
	}
	if ids := e.failedIDs(admin); len(ids) != 0 {
		t.Fatalf("failed after bulk requeue: %v", ids)
	}
}

// Failed messages deleted one by one or all at once are gone; a message a
// worker holds cannot be deleted under it. No worker runs: the test fails
// messages as a worker would, so the route's rate limit costs no time.
func TestDeleteFailedMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	tok, admin := e.token("monitoring"), e.adminToken()
	q := queue.New(e.redis.Client(), queue.Options{})
	ctx := context.Background()
	var failed []string
	for _, s := range []string{"a", "b", "c"} {
		id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": s, "text": "x"}, nil)
		j, err := q.Claim(ctx, "m365", time.Minute)
		if err != nil || j == nil || j.ID != id {
			t.Fatalf("claim: %v %v", j, err)
		}
		if err := q.Complete(ctx, j, queue.Outcome{Status: queue.StatusFailed, Attempted: true, Detail: "refused"}); err != nil {
			t.Fatal(err)
		}
		failed = append(failed, id)
	}
	busy := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "busy", "text": "x"}, nil)
	if j, err := q.Claim(ctx, "m365", time.Minute); err != nil || j == nil || j.ID != busy {
		t.Fatalf("claim: %v %v", j, err)
	}

	r := e.do("DELETE", "/v1/admin/routes/m365/messages/"+failed[0], "", admin, nil, nil)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/messages/"+failed[0], "", tok, nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("deleted message still readable: %d %s", r.status, r.body)
	}
	r = e.do("DELETE", "/v1/admin/routes/m365/messages/"+failed[0], "", admin, nil, nil)
	if r.status != http.StatusNotFound || r.json(t)["code"] != "not_found" {
		t.Fatalf("second delete: %d %s", r.status, r.body)
	}
	r = e.do("DELETE", "/v1/admin/routes/m365/messages/"+busy, "", admin, nil, nil)
	if r.status != http.StatusConflict || r.json(t)["code"] != "message_in_flight" {
		t.Fatalf("delete while sending: %d %s", r.status, r.body)
	}

	r = e.do("DELETE", "/v1/admin/routes/m365/failed", "", admin, nil, nil)
	if r.status != http.StatusOK || r.json(t)["deleted"].(float64) != 2 {
		t.Fatalf("bulk delete: %d %s", r.status, r.body)
	}
	for _, id := range failed[1:] {
		if r := e.do("GET", "/v1/messages/"+id, "", tok, nil, nil); r.status != http.StatusNotFound {
			t.Fatalf("bulk-deleted message still readable: %d %s", r.status, r.body)
		}
	}
	if ids := e.failedIDs(admin); len(ids) != 0 {
		t.Fatalf("failed after bulk delete: %v", ids)
	}
	if st := e.status(tok, busy); st["status"] != "sending" {
		t.Fatalf("the message being sent was touched: %v", st)
	}
}

// Admin endpoints take admin tokens only, and admin tokens cannot send.
func TestAdminScopeIsEnforced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	tok, admin := e.token("monitoring"), e.adminToken()
	id := queue.NewID(time.Now())
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/admin/routes/m365/failed"},
		{"DELETE", "/v1/admin/routes/m365/failed"},
		{"POST", "/v1/admin/routes/m365/failed/requeue"},
		{"POST", "/v1/admin/routes/m365/failed/" + id + "/requeue"},
		{"DELETE", "/v1/admin/routes/m365/messages/" + id},
	} {
		r := e.do(c.method, c.path, "", tok, nil, nil)
		if r.status != http.StatusForbidden || r.json(t)["code"] != "forbidden" {
			t.Errorf("%s %s with an app token: %d %s", c.method, c.path, r.status, r.body)
		}
		if r := e.do(c.method, c.path, "", "-", nil, nil); r.status != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d %s", c.method, c.path, r.status, r.body)
		}
		r = e.do(c.method, "/v1/admin/routes/nope"+c.path[len("/v1/admin/routes/m365"):], "", admin, nil, nil)
		if r.status != http.StatusNotFound || r.json(t)["code"] != "not_found" {
			t.Errorf("%s on an unknown route: %d %s", c.method, r.status, r.body)
		}
	}
	r := e.do("POST", "/v1/messages", "application/json", admin, []byte(`{"to":"ops@contoso.com","subject":"s","text":"x"}`), nil)
	if r.status != http.StatusForbidden || r.json(t)["code"] != "forbidden" {
		t.Fatalf("submit with an admin token: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/v1/admin/routes/m365/failed/"+id+"/requeue", "", admin, nil, nil)
	if r.status != http.StatusNotFound {
		t.Fatalf("requeue of an unknown id: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/v1/admin/routes/m365/failed?limit=0", "", admin, nil, nil)
	if r.status != http.StatusUnprocessableEntity || r.json(t)["code"] != "validation_failed" {
		t.Fatalf("limit=0: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/v1/admin/routes/m365/failed?cursor=bogus", "", admin, nil, nil)
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("bad cursor: %d %s", r.status, r.body)
	}
	e.assertNothingQueued()
}
