package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/testwait"
)

// waitRevocationsInMemory waits until the instance at e.base checks tokens
// against the revocation list in memory (want true) or asks Redis for each
// (want false), as its metric says.
func (e *env) waitRevocationsInMemory(want bool) {
	e.t.Helper()
	line := "mailgate_token_revocations_in_memory 0"
	if want {
		line = "mailgate_token_revocations_in_memory 1"
	}
	testwait.Until(e.t, 15*time.Second, func() bool { return strings.Contains(e.metrics(), line) }, "%s at %s", line, e.base)
}

// An instance that cannot follow the revocation channel (its subscription
// killed, channels denied to its Redis user) still refuses a token revoked
// meanwhile: each request asks Redis. Once it follows again it has loaded
// the revocation it never heard of. With Redis stopped, requests get the
// 503 they always got when the list could not be read.
func TestRevokedWhileInstanceCannotFollow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.Redis.URL = strings.Replace(c.Redis.URL, "redis://", "redis://mg:mg-pw@", 1)
	})
	ctx := context.Background()
	admin := e.redis.Client()
	if err := admin.Do(ctx, "ACL", "SETUSER", "mg", "on", ">mg-pw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	e.start(gateway.RoleAPI)
	raw, c, err := e.tokens.Issue("monitoring", token.ScopeApp, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"to":"ops@contoso.com","text":"x"}`)
	e.waitRevocationsInMemory(true)
	if r := e.do("POST", "/v1/messages", "application/json", raw, body, nil); r.status != http.StatusAccepted {
		t.Fatalf("before revocation: %d %s", r.status, r.body)
	}

	if err := admin.Do(ctx, "ACL", "SETUSER", "mg", "resetchannels").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	e.waitRevocationsInMemory(false)
	rc, err := token.NewRevocations(admin, "mailgate", nil).Revoke(ctx, c.ID, c.ExpiresAt.Time)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Listening != 0 {
		t.Fatalf("receipt %+v: the instance was still subscribed", rc)
	}
	refused := func(when string) {
		t.Helper()
		r := e.do("POST", "/v1/messages", "application/json", raw, body, nil)
		if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "revoked") {
			t.Fatalf("%s: %d %s, want 401 revoked", when, r.status, r.body)
		}
	}
	refused("revoked while the instance could not follow")

	if err := admin.Do(ctx, "ACL", "SETUSER", "mg", "allchannels").Err(); err != nil {
		t.Fatal(err)
	}
	e.waitRevocationsInMemory(true)
	refused("following again")

	e.redis.Stop()
	e.waitRevocationsInMemory(false)
	for _, tok := range []string{raw, e.token("monitoring")} {
		r := e.do("POST", "/v1/messages", "application/json", tok, body, nil)
		if r.status != http.StatusServiceUnavailable || r.json(t)["code"] != "queue_unavailable" {
			t.Fatalf("with Redis stopped: %d %s, want 503 queue_unavailable", r.status, r.body)
		}
	}
}
