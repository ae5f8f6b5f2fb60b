package e2e

import (
	"net/http"
	"testing"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
)

// Two installations sharing one Redis under different redis.key_prefix
// share nothing, the API's rate limits included: one app using up its
// limit on one installation leaves the same app id's limit on the other
// untouched.
func TestKeyPrefixSeparatesRateLimits(t *testing.T) {
	t.Parallel()
	a := newEnv(t, func(c *config.Config) {
		c.Redis.KeyPrefix = "install-a"
		c.Apps[0].RateLimit.PerMinute = 1
	})
	cfgB := *a.cfg
	cfgB.Redis.KeyPrefix = "install-b"
	b := &env{t: t, redis: a.redis, sim: a.sim, cfg: &cfgB, tokens: a.tokens, contract: a.contract}
	a.start(gateway.RoleAPI)
	b.start(gateway.RoleAPI)
	body := []byte(`{"to":"ops@contoso.com","text":"x"}`)

	if r := a.do("POST", "/v1/messages", "application/json", a.token("monitoring"), body, nil); r.status != http.StatusAccepted {
		t.Fatalf("installation a, first request: %d %s", r.status, r.body)
	}
	if r := a.do("POST", "/v1/messages", "application/json", a.token("monitoring"), body, nil); r.status != http.StatusTooManyRequests {
		t.Fatalf("installation a, second request: %d %s, want 429 (1 a minute)", r.status, r.body)
	}
	if r := b.do("POST", "/v1/messages", "application/json", b.token("monitoring"), body, nil); r.status != http.StatusAccepted {
		t.Fatalf("installation b, first request: %d %s, want 202: its limit is its own", r.status, r.body)
	}
}
