package oauth_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/oauth"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/testclock"
)

const (
	appID     = "7c1d2e3f-0000-4000-8000-00000000a001"
	appSecret = "s3cr3t~Value.0123456789abcdef"
	relay     = "relay@contoso.com"
	alice     = "alice@contoso.com"
	waitLong  = 10 * time.Second
)

// testBundle is a tenant with an app registered by client secret, and the
// configuration of a route that uses it.
type testBundle struct {
	sim   *exosim.Sim
	oauth config.OAuth
	clock *testclock.Clock
}

// setup starts a simulator with the relay and alice mailboxes. mod, when not
// nil, changes its options first.
func setup(t *testing.T, mod func(*exosim.Options)) *testBundle {
	t.Helper()
	clock := testclock.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	opt := exosim.Options{
		Mailboxes: map[string]string{relay: "relay-password", alice: "alice-password"},
		Now:       clock.Now,
	}
	if mod != nil {
		mod(&opt)
	}
	sim := exosim.Start(t, opt)
	sim.RegisterClientSecret(appID, appSecret)
	return &testBundle{
		sim:   sim,
		clock: clock,
		oauth: config.OAuth{
			ClientID:     appID,
			ClientSecret: appSecret,
			TokenURL:     sim.TokenURL(),
			Scope:        config.Office365Scope,
		},
	}
}

// options trust the simulator through the route's CA file and share its clock.
func (b *testBundle) options() oauth.Options {
	return oauth.Options{CAFile: b.sim.CAFile(), Now: b.clock.Now}
}

func (b *testBundle) tokenSource(t *testing.T, opts oauth.Options) *oauth.TokenSource {
	t.Helper()
	ts, err := oauth.NewTokenSource(&b.oauth, opts)
	if err != nil {
		t.Fatalf("NewTokenSource: %v", err)
	}
	return ts
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	t.Cleanup(cancel)
	return ctx
}

func mustToken(t *testing.T, ts *oauth.TokenSource) (string, time.Time) {
	t.Helper()
	tok, exp, err := ts.Token(ctxFor(t))
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if tok == "" {
		t.Fatal("Token: empty token")
	}
	return tok, exp
}

func wantIssued(t *testing.T, sim *exosim.Sim, n int) {
	t.Helper()
	if got := sim.TokensIssued(); got != n {
		t.Fatalf("TokensIssued = %d, want %d", got, n)
	}
}

// hookTransport calls before for each request to the token endpoint (not
// for discovery) and fails the request with its error.
type hookTransport struct {
	base   http.RoundTripper
	before func(*http.Request) error
}

func (h hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
		if err := h.before(r); err != nil {
			return nil, err
		}
	}
	return h.base.RoundTrip(r)
}

// hookedClient is the simulator's HTTP client with before in front of its
// token requests.
func hookedClient(sim *exosim.Sim, before func(*http.Request) error) *http.Client {
	c := sim.HTTPClient()
	c.Transport = hookTransport{base: c.Transport, before: before}
	return c
}
