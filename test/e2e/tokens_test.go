package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/token"
)

// issueWith signs a token as an installation with key and audience would.
func issueWith(t *testing.T, key, audience, subject, scope string) string {
	t.Helper()
	m, err := token.New(token.Options{Key: []byte(key), Issuer: "mailgate", Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := m.Issue(subject, scope, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// A token of another installation that shares the signing key is refused
// (401), app and admin tokens alike; and a signing key is rotated without
// downtime: during the overlap tokens of both keys work, after it only the
// new key's.
func TestTokenAudienceAndRotation(t *testing.T) {
	t.Parallel()
	const newKey = "e2e-the-next-signing-key-0123456789abcdef"
	e := newEnv(t, func(c *config.Config) {
		c.Auth.Audience = "mailgate.e2e.contoso.com"
		c.Auth.SigningKey = newKey
		c.Auth.PreviousSigningKeys = []string{signingKey}
	})
	aud := e.cfg.Auth.Audience
	stop := e.start(gateway.RoleAPI)

	routes := func(tok string) response { return e.do("GET", "/v1/routes", "", tok, nil, nil) }
	type tok struct{ name, raw string }
	oldToks := []tok{{"old app", issueWith(t, signingKey, aud, "monitoring", token.ScopeApp)}, {"old admin", issueWith(t, signingKey, aud, "ops", token.ScopeAdmin)}}
	newToks := []tok{{"new app", issueWith(t, newKey, aud, "monitoring", token.ScopeApp)}, {"new admin", issueWith(t, newKey, aud, "ops", token.ScopeAdmin)}}
	for _, tk := range append(oldToks, newToks...) {
		if r := routes(tk.raw); r.status != http.StatusOK {
			t.Errorf("overlap, %s token: %d %s", tk.name, r.status, r.body)
		}
	}
	for _, scope := range []string{token.ScopeApp, token.ScopeAdmin} {
		for _, key := range []string{newKey, signingKey} {
			r := routes(issueWith(t, key, "mailgate.staging.contoso.com", "monitoring", scope))
			if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "another mailgate installation") {
				t.Errorf("%s token of another installation: %d %s", scope, r.status, r.body)
			}
		}
	}
	// A token from before audiences existed says what to do.
	legacy := issueLegacy(t, newKey)
	if r := routes(legacy); r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "mailgate token issue") {
		t.Errorf("token without audience: %d %s", r.status, r.body)
	}

	stop()
	e.cfg.Auth.PreviousSigningKeys = nil // the rotation is over
	e.start(gateway.RoleAPI)
	for _, tk := range newToks {
		if r := routes(tk.raw); r.status != http.StatusOK {
			t.Errorf("after, %s token: %d %s", tk.name, r.status, r.body)
		}
	}
	for _, tk := range oldToks {
		if r := routes(tk.raw); r.status != http.StatusUnauthorized {
			t.Errorf("after, %s token: %d %s", tk.name, r.status, r.body)
		}
	}
}

// issueLegacy signs a token as mailgate did before tokens had an audience.
func issueLegacy(t *testing.T, key string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "mailgate", "sub": "monitoring", "jti": "0123456789abcdef0123456789abcdef", "scope": "app",
		"iat": time.Now().Unix(),
	}).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
