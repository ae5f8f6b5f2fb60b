package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/config"
)

// A Redis that may evict keys is refused at startup unless
// redis.allow_eviction accepts the risk; then every start warns and the
// metric says so. noeviction starts quietly.
func TestEvictionPolicy(t *testing.T) {
	t.Parallel()
	lru := []string{"--maxmemory-policy", "allkeys-lru"}

	t.Run("allkeys-lru refused", func(t *testing.T) {
		t.Parallel()
		b := setup(t, lru, nil)
		g, err := b.newGateway(RoleAll)
		if err == nil {
			g.closeRedis()
			t.Fatal("a gateway started on an evicting Redis")
		}
		for _, want := range []string{`maxmemory-policy is "allkeys-lru"`, "queued mail", "revoked token", "noeviction", "redis.allow_eviction: true"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
	})

	t.Run("allkeys-lru accepted", func(t *testing.T) {
		t.Parallel()
		b := setup(t, lru, func(c *config.Config) { c.Redis.AllowEviction = true })
		g, err := b.newGateway(RoleAPI)
		if err != nil {
			t.Fatal(err)
		}
		b.run(t, g)
		for _, want := range []string{"RISK ACCEPTED by redis.allow_eviction", "maxmemory_policy=allkeys-lru", "key=redis.allow_eviction"} {
			if !strings.Contains(b.log.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, b.log.String())
			}
		}
		if code, body := get(t, http.DefaultClient, "http://"+g.Addr()+"/metrics", nil); code != 200 || !strings.Contains(body, "mailgate_redis_eviction_policy_ok 0") {
			t.Errorf("metrics: %d, eviction metric not 0:\n%s", code, grepLines(body, "eviction"))
		}
	})

	t.Run("noeviction", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil, nil)
		g, err := b.newGateway(RoleAPI)
		if err != nil {
			t.Fatal(err)
		}
		b.run(t, g)
		if strings.Contains(b.log.String(), "level=WARN") {
			t.Errorf("warnings on a safe Redis:\n%s", b.log.String())
		}
		if _, body := get(t, http.DefaultClient, "http://"+g.Addr()+"/metrics", nil); !strings.Contains(body, "mailgate_redis_eviction_policy_ok 1") {
			t.Errorf("eviction metric not 1:\n%s", grepLines(body, "eviction"))
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A risk accepted in the file is logged at every start.
func TestRiskySettingsWarnAtStart(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Name: "m365", Type: config.RouteSMTPAuth, Host: "127.0.0.1",
			TLS:  config.RouteTLS{InsecureSkipVerify: true, InsecureSkipVerifyAcceptRisk: true},
			Auth: config.RouteAuth{Mechanism: config.MechLogin, Username: "relay@contoso.com", Password: "x"}})
	})
	g, err := b.newGateway(RoleAPI)
	if err != nil {
		t.Fatal(err)
	}
	b.run(t, g)
	if !strings.Contains(b.log.String(), "key=routes[m365].tls.insecure_skip_verify") {
		t.Errorf("no warning about insecure_skip_verify:\n%s", b.log.String())
	}
}
