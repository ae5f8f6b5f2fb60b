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
	"github.com/mailgate/mailgate/internal/queue"
)

type batchAnswer struct {
	Results []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Error  *struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
		} `json:"error"`
	} `json:"results"`
}

func (e *env) batch(tok string, items []map[string]any, header map[string]string) (response, batchAnswer) {
	e.t.Helper()
	b, err := json.Marshal(map[string]any{"messages": items})
	if err != nil {
		e.t.Fatal(err)
	}
	r := e.do("POST", "/v1/messages/batch", "application/json", tok, b, header)
	var a batchAnswer
	if strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(r.body, &a); err != nil {
			e.t.Fatalf("batch answer: %v\n%s", err, r.body)
		}
	}
	return r, a
}

func (e *env) queued(route string) int64 {
	e.t.Helper()
	d, err := queue.New(e.redis.Client(), queue.Options{}).Depth(context.Background(), route)
	if err != nil {
		e.t.Fatal(err)
	}
	return d.Ready + d.InFlight
}

// A batch with valid and invalid messages stores only the valid ones and
// answers each in order; sent again with the same idempotency keys it
// stores nothing more and answers the same ids.
func TestBatchMixedAndReplayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")
	items := []map[string]any{
		{"to": "ops@contoso.com", "subject": "one", "text": "x", "idempotency_key": "k0"},
		{"to": "someone@gmail.com", "text": "x", "idempotency_key": "k1"},
		{"to": "ops@contoso.com", "subject": "no body", "idempotency_key": "k2"},
		{"to": "ops@contoso.com", "text": "x", "bogus": 1, "idempotency_key": "k3"},
		{"to": "ops@contoso.com", "subject": "four", "text": "x", "idempotency_key": "k4",
			"attachments": []map[string]string{{"filename": "a.txt", "content": "aGk="}}},
		{"from": "ceo@contoso.com", "to": "ops@contoso.com", "text": "x", "idempotency_key": "k5"},
		{"to": "ops@contoso.com", "subject": "six", "text": "x"},
		{"to": "ops@contoso.com", "subject": "later", "text": "x", "idempotency_key": "k7",
			"send_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
	}
	queued := struct {
		ok     bool
		status int
		code   string
		state  string
	}{ok: true, state: "queued"}
	want := []struct {
		ok     bool
		status int
		code   string
		state  string
	}{queued, {status: 403, code: "recipient_not_allowed"}, {status: 422, code: "validation_failed"},
		{status: 400, code: "invalid_body"}, queued, {status: 403, code: "from_not_allowed"}, queued,
		{ok: true, state: "scheduled"}}

	check := func(round string) []string {
		r, a := e.batch(tok, items, nil)
		if r.status != http.StatusOK || len(a.Results) != len(items) {
			t.Fatalf("%s: %d %s", round, r.status, r.body)
		}
		ids := make([]string, len(items))
		for i, w := range want {
			got := a.Results[i]
			switch {
			case w.ok && (got.ID == "" || got.Status != w.state || got.Error != nil):
				t.Fatalf("%s: message %d: want an id, got %+v", round, i, got)
			case !w.ok && (got.ID != "" || got.Error == nil || got.Error.Status != w.status || got.Error.Code != w.code):
				t.Fatalf("%s: message %d: want %d %s, got %s", round, i, w.status, w.code, r.body)
			}
			ids[i] = got.ID
		}
		return ids
	}
	first := check("first")
	if n := e.queued("m365"); n != 4 {
		t.Fatalf("%d messages queued, want the 4 valid ones", n)
	}
	for _, i := range []int{0, 4, 6} {
		if st := e.status(tok, first[i]); st["status"] != "queued" {
			t.Fatalf("message %d: %v", i, st)
		}
	}
	again := check("replay")
	if again[0] != first[0] || again[4] != first[4] || again[7] != first[7] {
		t.Fatalf("replayed keys gave new ids: %v, first %v", again, first)
	}
	if again[6] == first[6] {
		t.Fatal("a message without a key was taken for a replay")
	}
	if n := e.queued("m365"); n != 5 {
		t.Fatalf("%d messages queued after the replay, want 5 (only the keyless one again)", n)
	}
}

// A batch over the message count or the byte limit is refused whole with
// 413, and so is a batch-wide Idempotency-Key (422); nothing is stored.
func TestBatchRefusedWhole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.Apps = append(c.Apps, config.App{ID: "tiny", Route: "m365", MaxMessageBytes: 2000,
			From: config.AppFrom{Default: "Alerts <alerts@alerts.contoso.com>"}})
	})
	e.start(gateway.RoleAPI)
	one := map[string]any{"to": "ops@contoso.com", "text": "x"}
	many := make([]map[string]any, 501)
	for i := range many {
		many[i] = one
	}
	if r, _ := e.batch(e.token("monitoring"), many, nil); r.status != http.StatusRequestEntityTooLarge || r.json(t)["code"] != "batch_too_large" {
		t.Fatalf("501 messages: %d %s", r.status, r.body)
	}
	// tiny may send 2000-byte messages: a batch may be 500 × 4000 bytes
	// plus 64 KiB.
	big := map[string]any{"to": "ops@contoso.com", "text": strings.Repeat("x", 100_000)}
	bigs := make([]map[string]any, 21) // 2.1 MB
	for i := range bigs {
		bigs[i] = big
	}
	if r, _ := e.batch(e.token("tiny"), bigs, nil); r.status != http.StatusRequestEntityTooLarge || r.json(t)["code"] != "batch_too_large" {
		t.Fatalf("2.1 MB batch: %d %s", r.status, r.body)
	}
	if r, _ := e.batch(e.token("monitoring"), []map[string]any{one}, map[string]string{"Idempotency-Key": "k"}); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("batch with an Idempotency-Key header: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/messages/batch", "application/json", e.token("monitoring"), []byte(`{"messages":[]}`), nil); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("empty batch: %d %s", r.status, r.body)
	}
	if n := e.queued("m365"); n != 0 {
		t.Fatalf("%d messages queued by refused batches", n)
	}
}

// With Redis refusing writes while it still answers the token check, a
// batch is answered 503 queue_unavailable as a whole and nothing of it is
// stored. Sent again once Redis takes writes, each message has its result
// (the invalid one its own problem) and the valid ones are stored once.
func TestBatchRedisFailing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")
	rdb := e.redis.Client()
	ctx := context.Background()
	items := []map[string]any{
		{"to": "ops@contoso.com", "text": "x", "idempotency_key": "a"},
		{"to": "someone@gmail.com", "text": "x", "idempotency_key": "b"},
		{"to": "ops@contoso.com", "text": "y", "idempotency_key": "c"},
	}
	// Every write refused (NOPERM), inside scripts too, while reads
	// such as the token check still work. (maxmemory would not do: Redis
	// lets a script that has written once go on writing past it.)
	if err := rdb.Do(ctx, "ACL", "SETUSER", "default", "-@write").Err(); err != nil {
		t.Fatal(err)
	}
	r, _ := e.batch(tok, items, nil)
	if r.status != http.StatusServiceUnavailable || r.json(t)["code"] != "queue_unavailable" || r.header.Get("Retry-After") == "" {
		t.Fatalf("with Redis refusing writes: %d %s", r.status, r.body)
	}
	if err := rdb.Do(ctx, "ACL", "SETUSER", "default", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if n := e.queued("m365"); n != 0 {
		t.Fatalf("%d messages stored by a batch answered 503", n)
	}
	r, a := e.batch(tok, items, nil)
	if r.status != http.StatusOK || len(a.Results) != 3 || a.Results[0].ID == "" || a.Results[2].ID == "" ||
		a.Results[1].Error == nil || a.Results[1].Error.Code != "recipient_not_allowed" {
		t.Fatalf("once Redis takes writes: %d %s", r.status, r.body)
	}
	if n := e.queued("m365"); n != 2 {
		t.Fatalf("%d messages queued, want 2", n)
	}
}
