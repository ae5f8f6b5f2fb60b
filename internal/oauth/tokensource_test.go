package oauth_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/oauth"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/testwait"
)

func TestTokenCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	const certApp = "7c1d2e3f-0000-4000-8000-00000000c001"
	certFile, keyFile := b.sim.RegisterClientCert(t, certApp)
	tests := []struct {
		name  string
		oauth config.OAuth
	}{
		{"client secret", b.oauth},
		{"certificate", config.OAuth{
			ClientID:              certApp,
			ClientCertificateFile: certFile,
			ClientKeyFile:         keyFile,
			TokenURL:              b.sim.TokenURL(),
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := oauth.NewTokenSource(&tt.oauth, b.options())
			if err != nil {
				t.Fatal(err)
			}
			_, exp := mustToken(t, ts)
			// A token is valid for an hour (exosim.DefaultTokenTTL).
			if left := exp.Sub(b.clock.Now()); left < 59*time.Minute || left > 60*time.Minute {
				t.Errorf("expires in %v, want an hour", left)
			}
			wantIssued(t, b.sim, i+1)
		})
	}
}

func TestTokenCached(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ts := b.tokenSource(t, b.options())
	first, exp := mustToken(t, ts)
	for range 50 {
		b.clock.Advance(time.Minute / 2)
		if tok, e := mustToken(t, ts); tok != first || !e.Equal(exp) {
			t.Fatal("a later call got another token")
		}
	}
	wantIssued(t, b.sim, 1)
}

func TestTokenConcurrentFirstFetch(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	opts := b.options()
	opts.HTTPClient = hookedClient(b.sim, func(*http.Request) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return nil
	})
	ts := b.tokenSource(t, opts)

	const callers = 16
	type result struct {
		tok string
		err error
	}
	results := make(chan result, callers)
	for range callers {
		go func() {
			tok, _, err := ts.Token(ctxFor(t))
			results <- result{tok, err}
		}()
	}
	select {
	case <-entered:
	case <-time.After(waitLong):
		t.Fatal("no token request")
	}
	testwait.Until(t, waitLong, func() bool { return ts.Waiting() == callers }, "every caller to wait for the request under way")
	close(release)
	var first string
	for range callers {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if first == "" {
			first = r.tok
		} else if r.tok != first {
			t.Fatal("callers got different tokens")
		}
	}
	wantIssued(t, b.sim, 1)
}

func TestInvalidate(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ts := b.tokenSource(t, b.options())
	first, _ := mustToken(t, ts)
	ts.Invalidate()
	second, _ := mustToken(t, ts)
	if second == first {
		t.Fatal("Invalidate: the same token again")
	}
	wantIssued(t, b.sim, 2)
	if again, _ := mustToken(t, ts); again != second {
		t.Fatal("the new token is not cached")
	}
	wantIssued(t, b.sim, 2)
}

func TestRefreshBeforeExpiry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		ttl           time.Duration
		refreshBefore time.Duration
		keep          time.Duration // the token is still served this long after it was issued
		refresh       time.Duration // and replaced this long after
	}{
		{"default margin", time.Hour, 0, 55*time.Minute - time.Second, 55*time.Minute + time.Second},
		{"own margin", time.Hour, 20 * time.Minute, 40*time.Minute - time.Second, 40 * time.Minute},
		// A lifetime under the margin is refreshed after half of it, not
		// fetched for every call.
		{"short lifetime", 4 * time.Minute, 0, 2*time.Minute - time.Second, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *exosim.Options) { o.TokenTTL = tt.ttl })
			opts := b.options()
			opts.RefreshBefore = tt.refreshBefore
			ts := b.tokenSource(t, opts)
			first, _ := mustToken(t, ts)
			mustToken(t, ts)
			b.clock.Advance(tt.keep)
			if tok, _ := mustToken(t, ts); tok != first {
				t.Fatalf("replaced after %v already", tt.keep)
			}
			wantIssued(t, b.sim, 1)
			b.clock.Advance(tt.refresh - tt.keep)
			second, exp := mustToken(t, ts)
			if second == first {
				t.Fatalf("not replaced after %v", tt.refresh)
			}
			wantIssued(t, b.sim, 2)
			if left := exp.Sub(b.clock.Now()); left < tt.ttl-time.Minute || left > tt.ttl {
				t.Errorf("the new token expires in %v, want %v", left, tt.ttl)
			}
		})
	}
}

// A refresh that fails while the token is still valid keeps the token and
// is retried after a while, not on every call.
func TestRefreshFailureKeepsToken(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var attempts atomic.Int32
	var failing atomic.Bool
	opts := b.options()
	opts.HTTPClient = hookedClient(b.sim, func(*http.Request) error {
		attempts.Add(1)
		if failing.Load() {
			return errors.New("connection refused")
		}
		return nil
	})
	// Every request's result is reported, for the failure metric.
	var mu sync.Mutex
	var results []string
	opts.Requested = func(err error) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, map[bool]string{true: "success", false: "failure"}[err == nil])
	}
	ts := b.tokenSource(t, opts)
	first, _ := mustToken(t, ts)

	failing.Store(true)
	b.clock.Advance(56 * time.Minute)
	for range 5 {
		if tok, _ := mustToken(t, ts); tok != first {
			t.Fatal("got another token")
		}
	}
	if n := attempts.Load(); n != 2 {
		t.Fatalf("%d token requests, want 2 (one failed refresh)", n)
	}
	b.clock.Advance(31 * time.Second)
	failing.Store(false)
	if tok, _ := mustToken(t, ts); tok == first {
		t.Fatal("not refreshed when Entra answered again")
	}
	wantIssued(t, b.sim, 2)

	// Once the token has expired, the failure is the caller's.
	failing.Store(true)
	b.clock.Advance(time.Hour)
	if _, _, err := ts.Token(ctxFor(t)); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Token after expiry: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"success", "failure", "success", "failure"}; !slices.Equal(results, want) {
		t.Errorf("reported results %v, want %v", results, want)
	}
}

func TestEntraRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	otherCert, otherKey := b.sim.RegisterClientCert(t, "another-app")
	with := func(mod func(*config.OAuth)) config.OAuth {
		o := b.oauth
		mod(&o)
		return o
	}
	tests := []struct {
		name   string
		oauth  config.OAuth
		code   string
		aadsts int
		want   []string
	}{
		{"wrong secret", with(func(o *config.OAuth) { o.ClientSecret = "wrong~" + appSecret }), "invalid_client", 7000215,
			[]string{"Entra ID refused the client credentials for client_id " + appID + " in tenant " + b.sim.TenantID(), "AADSTS7000215", "routes[].auth.oauth.client_secret", "expired"}},
		{"unknown app", with(func(o *config.OAuth) { o.ClientID = "no-such-app" }), "unauthorized_client", 700016,
			[]string{"no-such-app", "AADSTS700016", "routes[].auth.oauth.client_id"}},
		{"foreign certificate", with(func(o *config.OAuth) {
			o.ClientSecret, o.ClientCertificateFile, o.ClientKeyFile = "", otherCert, otherKey
		}), "invalid_client", 700027, []string{"AADSTS700027", "client_certificate_file"}},
		{"graph scope", with(func(o *config.OAuth) { o.Scope = "https://graph.microsoft.com/.default" }), "invalid_scope", 1002012,
			[]string{"routes[].auth.oauth.scope", "https://outlook.office365.com/.default"}},
		{"other tenant", with(func(o *config.OAuth) { o.TokenURL = strings.Replace(o.TokenURL, b.sim.TenantID(), "other-tenant", 1) }), "invalid_tenant", 90002,
			[]string{"Entra ID does not know tenant other-tenant", "routes[].auth.oauth.tenant_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts, err := oauth.NewTokenSource(&tt.oauth, b.options())
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = ts.Token(ctxFor(t))
			var e *oauth.Error
			if !errors.As(err, &e) {
				t.Fatalf("want *oauth.Error, got %T %v", err, err)
			}
			if e.Code != tt.code || e.AADSTS != tt.aadsts || e.Temporary() {
				t.Errorf("code %s AADSTS%d temporary %v, want %s AADSTS%d permanent", e.Code, e.AADSTS, e.Temporary(), tt.code, tt.aadsts)
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			for _, secret := range []string{appSecret, "Trace ID", "Timestamp"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q contains %q", msg, secret)
				}
			}
		})
	}
	wantIssued(t, b.sim, 0)
}

func TestUntrustedTokenEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ts := b.tokenSource(t, oauth.Options{Now: b.clock.Now}) // no CAFile
	_, _, err := ts.Token(ctxFor(t))
	if err == nil || !strings.Contains(err.Error(), "routes[].tls.ca_file") {
		t.Fatalf("want a hint at tls.ca_file, got %v", err)
	}
	if strings.Contains(err.Error(), appSecret) {
		t.Fatal("the error contains the secret")
	}
}

// A caller that gives up does not fail the others waiting for the same
// request.
func TestTokenCallerGivesUp(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	release := make(chan struct{})
	opts := b.options()
	opts.HTTPClient = hookedClient(b.sim, func(*http.Request) error { <-release; return nil })
	ts := b.tokenSource(t, opts)

	ctx, cancel := context.WithCancel(ctxFor(t))
	impatient := make(chan error, 1)
	go func() { _, _, err := ts.Token(ctx); impatient <- err }()
	testwait.Until(t, waitLong, func() bool { return ts.Waiting() == 1 }, "the first caller")
	patient := make(chan error, 1)
	go func() { _, _, err := ts.Token(ctxFor(t)); patient <- err }()
	testwait.Until(t, waitLong, func() bool { return ts.Waiting() == 2 }, "the second caller")
	cancel()
	if err := <-impatient; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v", err)
	}
	close(release)
	if err := <-patient; err != nil {
		t.Errorf("other caller: %v", err)
	}
	wantIssued(t, b.sim, 1)
}
