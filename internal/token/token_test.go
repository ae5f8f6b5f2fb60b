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

var (
	key   = []byte("0123456789abcdef0123456789abcdef")
	t0    = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	fixed = func() time.Time { return t0 }
)

func manager(t *testing.T) *token.Manager {
	t.Helper()
	m, err := token.New(key, "mailgate", nil, fixed)
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
	if _, err := token.New([]byte("short"), "mailgate", nil, nil); err == nil {
		t.Fatal("a 5-byte key was accepted")
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
		Issuer: "mailgate", Subject: "monitoring", ID: "abc",
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
		m, err := token.New(key, "mailgate", token.NewRevocations(srv.Client(), "mailgate", fixed), fixed)
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
	if err := token.NewRevocations(srv.Client(), "mailgate", fixed).Revoke(ctx, c.ID, c.ExpiresAt.Time); err != nil {
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
