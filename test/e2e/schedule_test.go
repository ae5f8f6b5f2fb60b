package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
)

func TestScheduledSending(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Delivery.MaxScheduleAhead = time.Hour })
	e.start("all")
	tok := e.token("monitoring")

	// Past the horizon: refused, nothing queued.
	r := e.do("POST", "/v1/messages", "application/json", tok, []byte(`{"to": "ops@contoso.com", "subject": "s", "text": "t",
		"send_at": "`+time.Now().Add(2*time.Hour).UTC().Format(time.RFC3339)+`"}`), nil)
	if r.status != http.StatusUnprocessableEntity || r.json(t)["code"] != "validation_failed" {
		t.Fatalf("send_at past the horizon: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/messages", "application/json", tok, []byte(`{"to": "ops@contoso.com", "subject": "s", "text": "t",
		"send_at": "tomorrow"}`), nil); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("send_at not RFC 3339: %d %s", r.status, r.body)
	}
	e.assertNothingQueued()

	// Whole seconds: RFC 3339 as clients write it.
	due := time.Now().Add(3 * time.Second).Truncate(time.Second)
	submit := func(subject string, at time.Time) string {
		r := e.do("POST", "/v1/messages", "application/json", tok, []byte(`{"to": "ops@contoso.com", "subject": "`+subject+`",
			"text": "t", "send_at": "`+at.UTC().Format(time.RFC3339)+`"}`), nil)
		if r.status != http.StatusAccepted || r.json(t)["status"] != "scheduled" {
			t.Fatalf("scheduled submission: %d %s", r.status, r.body)
		}
		return r.json(t)["id"].(string)
	}
	cancelled := submit("cancelled", due)
	kept := submit("kept", due.Add(time.Second))
	// The one-liner takes send_at in the query.
	oneLiner := e.do("POST", "/v1/messages?to=ops%40contoso.com&subject=oneliner&send_at="+due.UTC().Format(time.RFC3339),
		"text/plain", tok, []byte("t"), nil)
	if oneLiner.status != http.StatusAccepted || oneLiner.json(t)["status"] != "scheduled" {
		t.Fatalf("one-liner with send_at: %d %s", oneLiner.status, oneLiner.body)
	}

	st := e.status(tok, kept)
	if st["status"] != "scheduled" || st["send_at"] != due.Add(time.Second).UTC().Format(time.RFC3339) {
		t.Fatalf("status before due: %v", st)
	}
	r = e.do("DELETE", "/v1/messages/"+cancelled, "", tok, nil, nil)
	if r.status != http.StatusOK || r.json(t)["status"] != "cancelled" {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", "/v1/messages/"+cancelled, "", tok, nil, nil); r.status != http.StatusConflict || r.json(t)["code"] != "not_scheduled" {
		t.Fatalf("second cancel: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", "/v1/messages/"+kept, "", e.token("billing"), nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("another app's cancel: %d %s", r.status, r.body)
	}

	e.waitStatus(tok, kept, "sent", 30*time.Second)
	for _, m := range e.sim.Messages() {
		if m.At.Before(due) {
			t.Errorf("a scheduled message was delivered at %s, before it was due at %s", m.At, due)
		}
		if p := parseDelivered(t, m.Data); p.header.Get("Subject") == "cancelled" {
			t.Error("the cancelled message was delivered")
		}
	}
	if r := e.do("DELETE", "/v1/messages/"+kept, "", tok, nil, nil); r.status != http.StatusConflict {
		t.Fatalf("cancel after sending: %d %s", r.status, r.body)
	}
	if st := e.status(tok, cancelled); st["status"] != "cancelled" {
		t.Errorf("cancelled message: %v", st)
	}
}
