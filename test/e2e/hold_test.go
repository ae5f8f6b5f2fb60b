package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/test/exosim"
)

// A configuration error of the route (535 5.7.139: SMTP AUTH disabled) holds
// the route: its messages stay queued, no attempt is burned, the route's
// health says why, and when the tenant is fixed a probe releases it and
// every message is delivered.
func TestRouteHeldOnAuthDisabledThenResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Delivery.ProbeInterval = 200 * time.Millisecond })
	e.sim.SetSMTPAuthDisabled("", true)
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "held", "text": "x"}, nil))
	}

	// The route is reported held, with the reason and what to do.
	routes := e.waitRouteHeld(tok, 10*time.Second)
	if !strings.Contains(routes, "5.7.139") || !strings.Contains(routes, "SmtpClientAuthenticationDisabled") {
		t.Fatalf("held without a useful reason: %s", routes)
	}
	// Let a few probes fail, then check nothing was failed or burned.
	e.sim.WaitStats(t, 10*time.Second, "three refused AUTHs", func(s exosim.Stats) bool { return s.AuthFailures >= 3 })
	for _, id := range ids {
		st := e.status(tok, id)
		// "sending" shows for a moment while a worker hands a message back.
		if (st["status"] != "queued" && st["status"] != "sending") || st["attempts"].(float64) != 0 {
			t.Fatalf("a message of a held route was touched: %v", st)
		}
	}

	e.sim.SetSMTPAuthDisabled("", false)
	// 30 a minute: the five go out 2 s apart once the route is released.
	for _, id := range ids {
		e.waitStatus(tok, id, "sent", 30*time.Second)
	}
	if r := e.do("GET", "/v1/routes", "", tok, nil, nil); !strings.Contains(string(r.body), `"state":"ok"`) {
		t.Fatalf("route still held after delivery resumed: %s", r.body)
	}
	if n := len(e.sim.Messages()); n != 5 {
		t.Fatalf("%d delivered, want 5", n)
	}
}

// When the configuration claims a Send As grant the tenant does not have,
// Exchange answers 550 5.7.60: the message fails once, with a detail naming
// the missing grant, and is never retried (retrying earns the mailbox a block).
func TestSendAsDenialFailsOnceWithHint(t *testing.T) {
	t.Parallel()
	opts := simOptions()
	opts.SendAs = map[string][]string{relay: {"helpdesk@contoso.com"}} // no *@alerts.contoso.com in the tenant
	e := newEnvSim(t, opts, nil)
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "denied", "text": "x"}, nil)
	st := e.waitStatus(tok, id, "failed", 10*time.Second)
	lr := st["last_response"].(map[string]any)
	if lr["code"].(float64) != 550 || lr["enhanced_code"] != "5.7.60" {
		t.Fatalf("last_response %v", lr)
	}
	evs := st["events"].([]any)
	detail := evs[len(evs)-1].(map[string]any)["detail"].(string)
	if !strings.Contains(detail, "Send As") || !strings.Contains(detail, "Add-RecipientPermission") {
		t.Fatalf("the failure does not name the missing grant: %q", detail)
	}
	if st["attempts"].(float64) != 1 {
		t.Fatalf("attempts %v: a Send As denial must not be retried", st["attempts"])
	}
	// Another message afterwards shows the worker did not go on to retry the
	// first: the tenant saw exactly one 5.7.60 per message.
	id2 := e.submitJSON(e.token("billing"), map[string]any{"to": "ops@contoso.com", "text": "x"}, nil)
	e.waitStatus(e.token("billing"), id2, "sent", 10*time.Second)
	if n := e.sim.Stats().Replies["5.7.60"]; n != 1 {
		t.Fatalf("the tenant answered 5.7.60 %d times, want 1", n)
	}
}

// A held route does not keep its messages for ever: past delivery.max_age
// they fail, saying the route was held and why, and an operator can requeue
// them once the route works again.
func TestHeldRoutePastMaxAgeFailsRequeueable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.Delivery.ProbeInterval = 200 * time.Millisecond
		c.Delivery.MaxAge = 2 * time.Second
	})
	e.sim.SetSMTPAuthDisabled("", true)
	e.start(gateway.RoleAll)
	tok, admin := e.token("monitoring"), e.adminToken()
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "held", "text": "x"}, nil))
	}
	e.waitRouteHeld(tok, 10*time.Second)
	for _, id := range ids {
		st := e.waitStatus(tok, id, "failed", 15*time.Second)
		evs := st["events"].([]any)
		last, _ := evs[len(evs)-1].(map[string]any)["detail"].(string)
		if !strings.Contains(last, "expired after 2s while route m365 was held: ") || !strings.Contains(last, "5.7.139") {
			t.Fatalf("failed without the reason: %q", last)
		}
		if st["attempts"].(float64) != 0 {
			t.Fatalf("attempts %v: a held route's message is never attempted", st["attempts"])
		}
	}
	// One of them (at 30 a minute, a second one would wait past the 2 s
	// max_age of this test for its turn).
	e.sim.SetSMTPAuthDisabled("", false)
	if r := e.do("POST", "/v1/admin/routes/m365/failed/"+ids[0]+"/requeue", "", admin, nil, nil); r.status != 200 {
		t.Fatalf("requeue: %d %s", r.status, r.body)
	}
	e.waitStatus(tok, ids[0], "sent", 30*time.Second)
}
