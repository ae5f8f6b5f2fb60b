package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/apppolicy"
	"github.com/mailgate/mailgate/internal/intake"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/openapi/contract"
)

// outcomeQueue answers each message as its subject says: "stored",
// "unknown" (its script reached Redis as Redis went away: a
// *queue.UnknownOutcomeError, as queue.EnqueueManyRetrying reports it) or
// "lost" (not stored). What the queue tells apart is tested against a real
// Redis in package queue; here it is what the batch answer makes of it.
type outcomeQueue struct{}

func (outcomeQueue) outcome(m queue.Message) queue.EnqueueResult {
	switch m.Subject {
	case "stored":
		return queue.EnqueueResult{ID: m.ID, Created: true}
	case "unknown":
		return queue.EnqueueResult{ID: m.ID, Err: &queue.UnknownOutcomeError{ID: m.ID, Err: io.EOF}}
	}
	return queue.EnqueueResult{ID: m.ID, Err: errors.New("dial tcp: connection refused")}
}

func (q outcomeQueue) EnqueueRetrying(_ context.Context, m queue.Message, _ time.Duration) (string, bool, error) {
	r := q.outcome(m)
	return r.ID, r.Created, r.Err
}

func (q outcomeQueue) EnqueueManyRetrying(_ context.Context, ms []queue.Message, _ time.Duration) []queue.EnqueueResult {
	out := make([]queue.EnqueueResult, len(ms))
	for i, m := range ms {
		out[i] = q.outcome(m)
	}
	return out
}

// A batch item whose outcome is unknown is answered queue_unavailable with
// maybe_stored, not as not stored; an item not stored has no maybe_stored.
// When nothing is confirmed stored the whole batch is a 503 whose detail
// counts what may be stored. Every answer is checked against openapi.yaml.
func TestBatchTellsUnknownFromNotStored(t *testing.T) {
	t.Parallel()
	s := &Server{log: slog.New(slog.DiscardHandler), now: time.Now, budget: newBodyBudget(1<<20, 1<<20),
		maxBatchBytes: DefaultMaxBatchBytes,
		intake:        intake.New(intake.Options{Queue: outcomeQueue{}, RetryFor: time.Second})}
	pol, err := apppolicy.Compile(apppolicy.Spec{App: "t", DefaultFrom: "t@contoso.com", MaxBytes: 10_000, MaxRecipients: 10})
	if err != nil {
		t.Fatal(err)
	}
	app := &appPolicy{Policy: pol, id: "t", maxBytes: 10_000, defaultFrom: "t@contoso.com"}
	e := echo.NewWithConfig(echo.Config{HTTPErrorHandler: s.handleError, JSONSerializer: jsonSerializer{}})
	e.POST("/v1/messages/batch", s.submitBatch, func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error { c.Set(ctxApp, app); return next(c) }
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	spec := contract.New(t)

	type item struct {
		ID          string   `json:"id"`
		Error       *Problem `json:"error"`
		MaybeStored bool     `json:"maybe_stored"`
	}
	send := func(subjects ...string) (int, []item, Problem) {
		t.Helper()
		var msgs []map[string]string
		for _, s := range subjects {
			msgs = append(msgs, map[string]string{"to": "ops@contoso.com", "subject": s, "text": "x"})
		}
		body, err := json.Marshal(map[string]any{"messages": msgs})
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/messages/batch", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer test")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		spec.Check(t, req, body, resp, b)
		var ok struct{ Results []item }
		var p Problem
		if resp.StatusCode == http.StatusOK {
			err = json.Unmarshal(b, &ok)
		} else {
			err = json.Unmarshal(b, &p)
		}
		if err != nil {
			t.Fatalf("%d %s: %v", resp.StatusCode, b, err)
		}
		return resp.StatusCode, ok.Results, p
	}

	status, res, _ := send("stored", "unknown", "lost")
	if status != http.StatusOK || len(res) != 3 {
		t.Fatalf("mixed batch: %d %+v", status, res)
	}
	if res[0].ID == "" || res[0].Error != nil || res[0].MaybeStored {
		t.Errorf("stored item: %+v", res[0])
	}
	if p := res[1].Error; p == nil || p.Code != CodeQueueUnavailable || !res[1].MaybeStored ||
		!strings.Contains(p.Detail, "cannot be known") {
		t.Errorf("item of unknown outcome: %+v %+v, want queue_unavailable with maybe_stored", res[1], p)
	}
	if p := res[2].Error; p == nil || p.Code != CodeQueueUnavailable || res[2].MaybeStored ||
		!strings.Contains(p.Detail, "it was not stored") {
		t.Errorf("item not stored: %+v %+v, want queue_unavailable without maybe_stored", res[2], p)
	}

	status, _, p := send("unknown", "lost", "unknown")
	if status != http.StatusServiceUnavailable || p.Code != CodeQueueUnavailable ||
		!strings.Contains(p.Detail, "none of the batch's 3 messages is confirmed stored: 2 may be stored") ||
		!strings.Contains(p.Detail, "1 were not stored") {
		t.Errorf("nothing confirmed stored: %d %+v", status, p)
	}
	status, _, p = send("lost", "lost")
	if status != http.StatusServiceUnavailable || !strings.Contains(p.Detail, "none of its 2 messages was stored") {
		t.Errorf("nothing stored: %d %+v", status, p)
	}
}
