package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/test/exosim"
)

const clientID = "0e5c2f7a-1111-4a3b-9c9d-mailgate0001"

// oauthEnv delivers with XOAUTH2: app-only tokens from the simulator's Entra
// token endpoint, with a client secret or a certificate.
func oauthEnv(t *testing.T, simOpts exosim.Options, useCert bool, mutate func(*config.Config)) *env {
	t.Helper()
	var sim *exosim.Sim
	return newEnvSimHook(t, simOpts, func(s *exosim.Sim) { sim = s }, func(c *config.Config) {
		r := &c.Routes[0]
		r.Auth = config.RouteAuth{Mechanism: config.MechXOAUTH2, Username: relay, OAuth: config.OAuth{
			TenantID: sim.TenantID(), ClientID: clientID, TokenURL: sim.TokenURL()}}
		if useCert {
			r.Auth.OAuth.ClientCertificateFile, r.Auth.OAuth.ClientKeyFile = sim.RegisterClientCert(t, clientID)
		} else {
			sim.RegisterClientSecret(clientID, "s3cret-value")
			r.Auth.OAuth.ClientSecret = "s3cret-value"
		}
		if mutate != nil {
			mutate(c)
		}
	})
}

func TestXOAUTH2WithClientSecretAndCertificate(t *testing.T) {
	t.Parallel()
	for _, useCert := range []bool{false, true} {
		name := map[bool]string{false: "client secret", true: "certificate"}[useCert]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := oauthEnv(t, simOptions(), useCert, nil)
			e.start(gateway.RoleAll)
			tok := e.token("monitoring")
			var ids []string
			for i := 0; i < 5; i++ {
				ids = append(ids, e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "oauth", "text": "x"}, nil))
			}
			for _, id := range ids {
				e.waitStatus(tok, id, "sent", 15*time.Second)
			}
			for _, m := range e.sim.Messages() {
				if m.AuthUser != relay {
					t.Fatalf("authenticated as %q", m.AuthUser)
				}
			}
			// One token serves every connection of the route: never one per message.
			if n := e.sim.TokensIssued(); n != 1 {
				t.Fatalf("%d tokens fetched for 5 messages, want 1", n)
			}
		})
	}
}

// With username "{from}" each message authenticates as its own From
// mailbox: no Send As needed, and the limits apply per mailbox.
func TestFromMailboxes(t *testing.T) {
	t.Parallel()
	opts := exosim.Options{Mailboxes: map[string]string{"alice@contoso.com": "", "bob@contoso.com": ""}}
	e := oauthEnv(t, opts, false, func(c *config.Config) {
		r := &c.Routes[0]
		r.Auth.Username = config.FromMailbox
		r.Mailboxes = []string{"alice@contoso.com", "bob@contoso.com"}
		r.SendAs = nil
		c.Apps = []config.App{{ID: "monitoring", Route: "m365",
			From: config.AppFrom{Default: "alice@contoso.com", Allowed: []string{"alice@contoso.com", "bob@contoso.com"}}}}
	})
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	a := e.submitJSON(tok, map[string]any{"from": "Alice <alice@contoso.com>", "to": "ops@contoso.com", "text": "from alice"}, nil)
	b := e.submitJSON(tok, map[string]any{"from": "bob@contoso.com", "to": "ops@contoso.com", "text": "from bob"}, nil)
	e.waitStatus(tok, a, "sent", 15*time.Second)
	e.waitStatus(tok, b, "sent", 15*time.Second)
	got := map[string]string{}
	for _, m := range e.sim.Messages() {
		got[m.From] = m.AuthUser
	}
	if got["alice@contoso.com"] != "alice@contoso.com" || got["bob@contoso.com"] != "bob@contoso.com" {
		t.Fatalf("MAIL FROM → AUTH user: %v", got)
	}
	// A mailbox outside the list is refused at the door.
	r := e.do("POST", "/v1/messages", "application/json", tok, []byte(`{"from":"carol@contoso.com","to":"ops@contoso.com","text":"x"}`), nil)
	if r.status != 403 || !strings.Contains(string(r.body), "from_not_allowed") {
		t.Fatalf("carol: %d %s", r.status, r.body)
	}
}

// Tokens that stop being valid mid-run (535 5.7.3 on the next AUTH) are
// refreshed once and the attempt goes through: no message fails, none is
// even deferred, and the route is never held.
func TestTokenExpiryMidRun(t *testing.T) {
	t.Parallel()
	e := oauthEnv(t, simOptions(), false, func(c *config.Config) {
		c.Delivery.IdleTimeout = time.Millisecond // a new connection, and AUTH, for every message
	})
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	send := func(n int) {
		for i := 0; i < n; i++ {
			id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "expiry", "text": "x"}, nil)
			st := e.waitStatus(tok, id, "sent", 15*time.Second)
			if st["attempts"].(float64) != 1 {
				t.Fatalf("a message needed %v attempts: %v", st["attempts"], st)
			}
		}
	}
	send(3)
	e.sim.ExpireTokens()
	send(3)
	if n := e.sim.TokensIssued(); n != 2 {
		t.Fatalf("%d tokens fetched, want 2 (one, then one after the expiry)", n)
	}
	if s := e.sim.Stats(); s.AuthFailures != 1 {
		t.Fatalf("%d refused AUTHs, want exactly the one that found the token expired", s.AuthFailures)
	}
	if r := e.do("GET", "/v1/routes", "", tok, nil, nil); strings.Contains(string(r.body), `"held"`) {
		t.Fatalf("route held: %s", r.body)
	}
}

// On a {from} route, one mailbox with SMTP AUTH disabled (535 5.7.139 "for
// the Mailbox") makes only its own messages wait: the other mailboxes keep
// sending, the route is not held, and the mailbox's messages go out once it
// is enabled.
func TestFromMailboxWithAuthDisabledWaitsAlone(t *testing.T) {
	t.Parallel()
	opts := exosim.Options{Mailboxes: map[string]string{"alice@contoso.com": "", "bob@contoso.com": ""}}
	e := oauthEnv(t, opts, false, func(c *config.Config) {
		r := &c.Routes[0]
		r.Auth.Username = config.FromMailbox
		r.Mailboxes = []string{"alice@contoso.com", "bob@contoso.com"}
		r.SendAs = nil
		c.Delivery.ProbeInterval = 300 * time.Millisecond
		c.Apps = []config.App{{ID: "monitoring", Route: "m365",
			From: config.AppFrom{Default: "alice@contoso.com", Allowed: []string{"alice@contoso.com", "bob@contoso.com"}}}}
	})
	e.sim.SetSMTPAuthDisabled("bob@contoso.com", true)
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	bob := e.submitJSON(tok, map[string]any{"from": "bob@contoso.com", "to": "ops@contoso.com", "text": "from bob"}, nil)
	e.waitEvent(tok, bob, "cannot authenticate", 15*time.Second)
	alice := e.submitJSON(tok, map[string]any{"from": "alice@contoso.com", "to": "ops@contoso.com", "text": "from alice"}, nil)
	ast := e.waitStatus(tok, alice, "sent", 15*time.Second)
	if evs := fmt.Sprint(ast["events"]); strings.Contains(evs, "held") || ast["attempts"].(float64) != 1 {
		t.Fatalf("alice's message waited for bob's mailbox: %v", ast)
	}
	st := e.status(tok, bob)
	if st["status"] == "sent" || st["status"] == "failed" || st["attempts"].(float64) != 0 {
		t.Fatalf("bob's message: %v", st)
	}
	if r := e.do("GET", "/v1/routes", "", tok, nil, nil); strings.Contains(string(r.body), `"held"`) {
		t.Fatalf("one mailbox held the whole route: %s", r.body)
	}
	e.sim.SetSMTPAuthDisabled("bob@contoso.com", false)
	e.waitStatus(tok, bob, "sent", 15*time.Second)
}
