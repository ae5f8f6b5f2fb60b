package token_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testclock"
)

// A revocation made elsewhere (another instance, the CLI) reaches an
// instance with a cache within RevocationCacheMaxAge, never later; one
// made through the instance itself at once; and with Redis gone a cached
// answer is not reused past the bound.
func TestCachedRevocationsBound(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	clock := testclock.New(t0)
	cached := token.NewCachedRevocations(srv.Client(), "mailgate", clock.Now)
	instance, err := token.New(token.Options{Key: key, Issuer: "mailgate", Audience: aud, Revoked: cached, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := token.NewRevocations(srv.Client(), "mailgate", clock.Now)

	issue := func() (string, *token.Claims) {
		t.Helper()
		raw, c, err := instance.Issue("monitoring", token.ScopeApp, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return raw, c
	}
	raw, c := issue()
	if _, err := instance.Verify(ctx, raw); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if err := elsewhere.Revoke(ctx, c.ID, c.ExpiresAt.Time); err != nil {
		t.Fatal(err)
	}
	// Within the bound the cached answer may still be used: this is what
	// the cache trades, and what the assertion after it bounds.
	if _, err := instance.Verify(ctx, raw); err != nil {
		t.Fatalf("the cache was not used within its bound: %v", err)
	}
	clock.Advance(token.RevocationCacheMaxAge)
	if _, err := instance.Verify(ctx, raw); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("revoked %v ago elsewhere, still accepted: %v", token.RevocationCacheMaxAge, err)
	}

	// Revoked through this instance: refused at once.
	raw2, c2 := issue()
	if _, err := instance.Verify(ctx, raw2); err != nil {
		t.Fatal(err)
	}
	if err := cached.Revoke(ctx, c2.ID, c2.ExpiresAt.Time); err != nil {
		t.Fatal(err)
	}
	if _, err := instance.Verify(ctx, raw2); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("revoked on this instance, still accepted: %v", err)
	}

	// Redis gone: fail closed once the cached answer is too old.
	raw3, _ := issue()
	if _, err := instance.Verify(ctx, raw3); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	clock.Advance(token.RevocationCacheMaxAge)
	if _, err := instance.Verify(ctx, raw3); err == nil || token.IsAuthError(err) {
		t.Fatalf("Verify with Redis down past the cache bound = %v, want an infrastructure error", err)
	}
}
