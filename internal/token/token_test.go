package token_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/redistest"
)

const aud = "mailgate/test"

var (
	key   = []byte("0123456789abcdef0123456789abcdef")
	t0    = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	fixed = func() time.Time { return t0 }
)

func manager(t *testing.T) *token.Manager {
	t.Helper()
	m, err := token.New(token.Options{Key: key, Issuer: "mailgate", Audience: aud, Now: fixed})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIssueAndParse(t *testing.T) {
	t.Parallel()
	m := manager(t)
	raw, issued, err := m.Issue("monitoring", token.ScopeApp, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "monitoring" || c.Scope != token.ScopeApp || c.ID != issued.ID || len(c.ID) != 32 ||
		c.Issuer != "mailgate" || !c.ExpiresAt.Time.Equal(t0.Add(time.Hour)) || !c.IssuedAt.Time.Equal(t0) {
		t.Fatalf("claims %+v", c)
	}
	_, other, err := m.Issue("monitoring", token.ScopeApp, 0)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == issued.ID || other.ExpiresAt != nil {
		t.Fatalf("second token: %+v", other)
	}
}

func TestShortKeyRefused(t *testing.T) {
	t.Parallel()
	if _, err := token.New(token.Options{Key: []byte("short"), Issuer: "mailgate", Audience: aud}); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
	if _, err := token.New(token.Options{Key: key, PreviousKeys: [][]byte{[]byte("short")}, Issuer: "mailgate", Audience: aud}); err == nil {
		t.Fatal("a 5-byte previous key was accepted")
	}
	if _, err := token.New(token.Options{Key: key, Issuer: "mailgate"}); err == nil {
		t.Fatal("a manager without audience was made")
	}
}

func sign(t *testing.T, method jwt.SigningMethod, k any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(mut func(*token.Claims)) *token.Claims {
	c := &token.Claims{Scope: token.ScopeApp, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "mailgate", Subject: "monitoring", ID: "abc", Audience: jwt.ClaimStrings{aud},
		IssuedAt:  jwt.NewNumericDate(t0.Add(-time.Hour)),
		ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
	}}
	if mut != nil {
		mut(c)
	}
	return c
}

func TestParseRefusesBadTokens(t *testing.T) {
	t.Parallel()
	m := manager(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := sign(t, jwt.SigningMethodHS256, key, claims(nil))
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	tampered := parts[0] + "." + b64([]byte(`{"scope":"app","iss":"mailgate","sub":"billing","jti":"abc","exp":9999999999}`)) + "." + parts[2]
	noneHeader := b64([]byte(`{"alg":"none","typ":"JWT"}`))

	cases := []struct {
		name string
		raw  string
		want error
	}{
		{"empty", "", token.ErrMalformed},
		{"garbage", "not.a.token", token.ErrMalformed},
		{"alg none", noneHeader + "." + parts[1] + ".", token.ErrSignature},
		{"alg none signed by jwt lib", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), token.ErrSignature},
		{"RS256 instead of HS256", sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil)), token.ErrSignature},
		{"HS512 instead of HS256", sign(t, jwt.SigningMethodHS512, key, claims(nil)), token.ErrSignature},
		{"wrong key", sign(t, jwt.SigningMethodHS256, []byte("another-key-another-key-another-key"), claims(nil)), token.ErrSignature},
		{"tampered claims", tampered, token.ErrSignature},
		{"expired", sign(t, jwt.SigningMethodHS256, key, claims(func(c *token.Claims) { c.ExpiresAt = jwt.NewNumericDate(t0.Add(-time.Minute)) })), token.ErrExpired},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, key, claims(func(c *token.Claims) { c.NotBefore = jwt.NewNumericDate(t0.Add(time.Hour)) })), token.ErrNotYet},
		{"other issuer", sign(t, jwt.SigningMethodHS256, key, claims(func(c *token.Claims) { c.Issuer = "evil" })), token.ErrIssuer},
		{"other audience", sign(t, jwt.SigningMethodHS256, key, claims(func(c *token.Claims) { c.Audience = jwt.ClaimStrings{"mailgate/other"} })), token.ErrAudience},
		{"no audience", sign(t, jwt.SigningMethodHS256, key, claims(func(c *token.Claims) { c.Audience = nil })), token.ErrNoAudience},
		{"no subject", sign(t, jwt.SigningMethodHS256, key, claims(func(c *token.Claims) { c.Subject = "" })), token.ErrClaims},
		{"no jti", sign(t, jwt.SigningMethodHS256, key, claims(func(c *token.Claims) { c.ID = "" })), token.ErrClaims},
		{"unknown scope", sign(t, jwt.SigningMethodHS256, key, claims(func(c *token.Claims) { c.Scope = "root" })), token.ErrClaims},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Parse(tc.raw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse = %v, want %v", err, tc.want)
			}
			if !token.IsAuthError(err) {
				t.Fatalf("%v is not classed as an auth error", err)
			}
		})
	}
	if _, err := m.Parse(good); err != nil {
		t.Fatalf("the untampered token was refused: %v", err)
	}
}

func TestRevokedOnOneInstanceRefusedOnAnother(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	newInstance := func() *token.Manager {
		m, err := token.New(token.Options{Key: key, Issuer: "mailgate", Audience: aud, Revoked: token.NewRevocations(srv.Client(), "mailgate", fixed), Now: fixed})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	instanceA, instanceB := newInstance(), newInstance()
	issue := func() (string, *token.Claims) {
		raw, c, err := instanceA.Issue("monitoring", token.ScopeApp, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return raw, c
	}
	raw, c := issue()
	keep, _ := issue()
	if _, err := instanceB.Verify(ctx, raw); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if _, err := token.NewRevocations(srv.Client(), "mailgate", fixed).Revoke(ctx, c.ID, c.ExpiresAt.Time); err != nil {
		t.Fatal(err)
	}
	if _, err := instanceB.Verify(ctx, raw); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("revoked token on the other instance: %v", err)
	}
	if _, err := instanceA.Verify(ctx, keep); err != nil {
		t.Fatalf("revoking one token refused another of the same app: %v", err)
	}
	ttl := srv.Client().TTL(ctx, "mailgate:revoked:"+c.ID).Val()
	if ttl <= 0 || ttl > time.Hour+2*time.Minute {
		t.Fatalf("revocation entry TTL %v: should live as long as the token could", ttl)
	}

	// With Redis gone the answer is an error, never a pass.
	srv.Kill()
	_, err := instanceB.Verify(ctx, keep)
	if err == nil || token.IsAuthError(err) {
		t.Fatalf("Verify with Redis down = %v, want an infrastructure error", err)
	}
}

// Two installations that share a signing key refuse each other's tokens,
// app and admin alike, because each binds its tokens to its own audience.
func TestOtherInstallationRefused(t *testing.T) {
	t.Parallel()
	here := manager(t)
	there, err := token.New(token.Options{Key: key, Issuer: "mailgate", Audience: "mailgate/elsewhere", Now: fixed})
	if err != nil {
		t.Fatal(err)
	}
	for _, scope := range []string{token.ScopeApp, token.ScopeAdmin} {
		raw, _, err := there.Issue("monitoring", scope, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := here.Parse(raw); !errors.Is(err, token.ErrAudience) || !token.IsAuthError(err) {
			t.Errorf("%s token of another installation: %v, want ErrAudience", scope, err)
		}
		own, _, err := here.Issue("monitoring", scope, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := here.Parse(own); err != nil || len(c.Audience) != 1 || c.Audience[0] != aud {
			t.Errorf("own %s token: %+v, %v", scope, c, err)
		}
	}
}

// A token issued before audiences existed is refused with a message that
// says what to do, unless the compatibility setting lets it through.
func TestTokenWithoutAudience(t *testing.T) {
	t.Parallel()
	legacy := sign(t, jwt.SigningMethodHS256, key, claims(func(c *token.Claims) { c.Audience = nil }))
	if _, err := manager(t).Parse(legacy); !errors.Is(err, token.ErrNoAudience) ||
		!strings.Contains(err.Error(), "mailgate token issue") || !strings.Contains(err.Error(), "accept_tokens_without_audience") {
		t.Fatalf("legacy token: %v", err)
	}
	compat, err := token.New(token.Options{Key: key, Issuer: "mailgate", Audience: aud, AcceptNoAudience: true, Now: fixed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compat.Parse(legacy); err != nil {
		t.Fatalf("legacy token with the compatibility setting: %v", err)
	}
	other := sign(t, jwt.SigningMethodHS256, key, claims(func(c *token.Claims) { c.Audience = jwt.ClaimStrings{"mailgate/elsewhere"} }))
	if _, err := compat.Parse(other); !errors.Is(err, token.ErrAudience) {
		t.Fatalf("the compatibility setting let another installation's token in: %v", err)
	}
}

// Key rotation: during the overlap tokens of both keys verify and new ones
// are signed with the new key; once the old key is removed only tokens of
// the new key do.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := key, []byte("a-brand-new-signing-key-0123456789abcdef")
	before := manager(t)
	overlap, err := token.New(token.Options{Key: newKey, PreviousKeys: [][]byte{oldKey}, Issuer: "mailgate", Audience: aud, Now: fixed})
	if err != nil {
		t.Fatal(err)
	}
	after, err := token.New(token.Options{Key: newKey, Issuer: "mailgate", Audience: aud, Now: fixed})
	if err != nil {
		t.Fatal(err)
	}

	for _, scope := range []string{token.ScopeApp, token.ScopeAdmin} {
		oldTok, _, err := before.Issue("monitoring", scope, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		newTok, _, err := overlap.Issue("monitoring", scope, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for name, raw := range map[string]string{"old": oldTok, "new": newTok} {
			if _, err := overlap.Parse(raw); err != nil {
				t.Errorf("overlap, %s %s token: %v", name, scope, err)
			}
		}
		if _, err := before.Parse(newTok); !errors.Is(err, token.ErrSignature) {
			t.Errorf("the new %s token was signed with the old key: %v", scope, err)
		}
		if _, err := after.Parse(newTok); err != nil {
			t.Errorf("after, new %s token: %v", scope, err)
		}
		if _, err := after.Parse(oldTok); !errors.Is(err, token.ErrSignature) {
			t.Errorf("after, old %s token: %v, want ErrSignature", scope, err)
		}
	}
}
