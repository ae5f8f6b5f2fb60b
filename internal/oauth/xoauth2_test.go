package oauth_test

import (
	"context"
	"testing"

	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/oauth"
	"github.com/mailgate/mailgate/test/exosim"
)

// auth runs AUTH XOAUTH2 as mailbox on a new connection.
func auth(t *testing.T, b *testBundle, xo *oauth.XOAUTH2, mailbox string) error {
	t.Helper()
	a, err := xo.Auth(ctxFor(t), mailbox)
	if err != nil {
		t.Fatalf("Auth(%s): %v", mailbox, err)
	}
	return b.sim.DialTLS(t).Auth(a)
}

func TestXOAUTH2(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	xo := oauth.NewXOAUTH2(b.tokenSource(t, b.options()))

	c := b.sim.DialTLS(t)
	a, err := xo.Auth(ctxFor(t), relay)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(a); err != nil {
		t.Fatalf("AUTH XOAUTH2: %v", err)
	}
	// One token serves every mailbox and connection.
	if err := auth(t, b, xo, alice); err != nil {
		t.Fatalf("AUTH XOAUTH2 as %s: %v", alice, err)
	}
	wantIssued(t, b.sim, 1)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	// Entra revokes the token before its time: Exchange refuses it, and
	// after Refused the next AUTH brings a new one.
	b.sim.ExpireTokens()
	exosim.WantReply(t, auth(t, b, xo, relay), 535, "5.7.3")
	xo.Refused(relay)
	if err := auth(t, b, xo, relay); err != nil {
		t.Fatalf("AUTH after Refused: %v", err)
	}
	wantIssued(t, b.sim, 2)
}

// A connection refused a token that has been replaced since does not throw
// away its replacement.
func TestXOAUTH2RefusedTwice(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	xo := oauth.NewXOAUTH2(b.tokenSource(t, b.options()))

	late, err := xo.Auth(ctxFor(t), alice) // presented only after the revocation
	if err != nil {
		t.Fatal(err)
	}
	b.sim.ExpireTokens()
	exosim.WantReply(t, auth(t, b, xo, relay), 535, "5.7.3")
	xo.Refused(relay)
	if err := auth(t, b, xo, relay); err != nil {
		t.Fatalf("AUTH after Refused: %v", err)
	}
	exosim.WantReply(t, b.sim.DialTLS(t).Auth(late), 535, "5.7.3")
	xo.Refused(alice)
	if err := auth(t, b, xo, alice); err != nil {
		t.Fatalf("AUTH as %s: %v", alice, err)
	}
	wantIssued(t, b.sim, 2)
}

func TestXOAUTH2Mailbox(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	xo := oauth.NewXOAUTH2(b.tokenSource(t, b.options()))
	for _, mb := range []string{"", "relay@contoso.com\x01auth=Bearer x", "a@b\r\nQUIT"} {
		if _, err := xo.Auth(ctxFor(t), mb); err == nil {
			t.Errorf("Auth(%q): no error", mb)
		}
	}
	wantIssued(t, b.sim, 0)
}

// XOAUTH2 has the methods of delivery.Authenticator.
var _ interface {
	Auth(context.Context, string) (smtp.Auth, error)
	Refused(string)
} = (*oauth.XOAUTH2)(nil)

// A route's XOAUTH2 authenticator as the gateway wires it (this was an
// example that never ran): one token source per route, built from the
// route's oauth block, trusting the route's tls.ca_file for token_url, and
// shared by every connection of the route.
func TestXOAUTH2FromRoute(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	route := config.Route{
		Name: "m365",
		Auth: config.RouteAuth{Mechanism: config.MechXOAUTH2, Username: relay, OAuth: b.oauth},
		TLS:  config.RouteTLS{CAFile: b.sim.CAFile()},
	}
	ts, err := oauth.NewTokenSource(&route.Auth.OAuth, oauth.Options{CAFile: route.TLS.CAFile})
	if err != nil {
		t.Fatalf("route %s: %v", route.Name, err)
	}
	xo := oauth.NewXOAUTH2(ts)
	for i := range 2 {
		if err := auth(t, b, xo, route.Auth.Username); err != nil {
			t.Fatalf("connection %d: AUTH XOAUTH2 as %s: %v", i+1, route.Auth.Username, err)
		}
	}
	wantIssued(t, b.sim, 1)
}
