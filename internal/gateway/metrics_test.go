package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
)

// With metrics.listen, /metrics is served there and no longer on the API's
// address.
func TestMetricsOwnListener(t *testing.T) {
	t.Parallel()
	for _, role := range []string{RoleAPI, RoleWorker} {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil, func(c *config.Config) { c.Metrics.Listen = "127.0.0.1:0" })
			g, err := b.newGateway(role)
			if err != nil {
				t.Fatal(err)
			}
			b.run(t, g)
			if code, _ := get(t, http.DefaultClient, "http://"+g.Addr()+"/metrics", nil); code != http.StatusNotFound {
				t.Errorf("/metrics on the API address: %d, want 404", code)
			}
			if code, body := get(t, http.DefaultClient, "http://"+g.MetricsAddr()+"/metrics", nil); code != http.StatusOK || !strings.Contains(body, "mailgate_queue_up 1") {
				t.Errorf("/metrics on metrics.listen: %d\n%s", code, grepLines(body, "mailgate_queue"))
			}
			if code, _ := get(t, http.DefaultClient, "http://"+g.Addr()+"/healthz", nil); code != http.StatusOK {
				t.Errorf("/healthz on the API address: %d", code)
			}
		})
	}
}

// With metrics.token, a scrape needs it as a Bearer token.
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	const tok = "metrics-token-0123456789"
	b := setup(t, nil, func(c *config.Config) { c.Metrics.Token = tok })
	g, err := b.newGateway(RoleAPI)
	if err != nil {
		t.Fatal(err)
	}
	b.run(t, g)
	url := "http://" + g.Addr() + "/metrics"
	for name, h := range map[string]map[string]string{
		"none":   nil,
		"wrong":  {"Authorization": "Bearer metrics-token-0123456780"},
		"prefix": {"Authorization": "Bearer metrics-token"},
		"basic":  {"Authorization": "Basic " + tok},
	} {
		if code, body := get(t, http.DefaultClient, url, h); code != http.StatusUnauthorized || strings.Contains(body, "go_goroutines") {
			t.Errorf("%s token: %d", name, code)
		}
	}
	if code, body := get(t, http.DefaultClient, url, map[string]string{"Authorization": "Bearer " + tok}); code != http.StatusOK || !strings.Contains(body, "mailgate_queue_up 1") {
		t.Errorf("right token: %d", code)
	}
}

// Scrapes within a few seconds of each other cost Redis nothing: the queue
// collector reuses its last reading. Counted with INFO commandstats of a
// real redis-server.
func TestMetricsScrapeCachesRedisReads(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, func(c *config.Config) {
		for _, n := range []string{"a", "b", "c"} {
			c.Routes = append(c.Routes, config.Route{Name: n, Type: config.RouteSMTP, Host: "127.0.0.1", Port: 2525, TLS: config.RouteTLS{Mode: config.TLSNone}})
		}
	})
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	g, err := New(Options{Config: b.cfg, Role: RoleAPI, Now: now, Log: testLogger(b)})
	if err != nil {
		t.Fatal(err)
	}
	b.run(t, g)
	rdb := b.redis.Client()
	commands := func() int {
		t.Helper()
		info, err := rdb.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
				continue
			}
			calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
			c, err := strconv.Atoi(calls)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			n += c
		}
		return n
	}
	scrape := func() {
		t.Helper()
		if code, body := get(t, http.DefaultClient, "http://"+g.Addr()+"/metrics", nil); code != http.StatusOK || !strings.Contains(body, `mailgate_queue_messages{route="c",state="waiting"} 0`) {
			t.Fatalf("scrape: %d\n%s", code, grepLines(body, "mailgate_queue"))
		}
	}

	before := commands()
	scrape()
	first := commands() - before
	if first == 0 {
		t.Fatal("the first scrape read nothing from Redis; the test would prove nothing")
	}
	before = commands()
	clock.Add(int64(4 * time.Second))
	scrape()
	if n := commands() - before; n != 0 {
		t.Errorf("a second scrape 4 s later sent %d Redis commands, want 0 (the first sent %d)", n, first)
	}
	before = commands()
	clock.Add(int64(2 * time.Second))
	scrape()
	if n := commands() - before; n == 0 {
		t.Errorf("a scrape after the cache expired read nothing from Redis")
	}
}
