package metrics

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves reg for Prometheus. With a token, a scrape must send
// `Authorization: Bearer <token>` (Prometheus: authorization.credentials);
// the comparison takes the same time whatever the token sent, so it cannot
// be guessed a byte at a time.
func Handler(reg prometheus.Gatherer, token string) http.Handler {
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if token == "" {
		return h
	}
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mailgate metrics"`)
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"type":"about:blank","title":"Unauthorized","status":401,"code":"unauthorized","detail":"send the metrics token (metrics.token) as Authorization: Bearer <token>"}` + "\n"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Cached wraps c so that it is collected at most once per ttl; scrapes in
// between get the metrics of the last collection. The queue collector reads
// Redis for every route, and several Prometheus servers (or a dashboard
// refreshing) scraping every instance would otherwise multiply that work.
// Concurrent scrapes wait for one collection instead of starting their own.
func Cached(c prometheus.Collector, ttl time.Duration, now func() time.Time) prometheus.Collector {
	if now == nil {
		now = time.Now
	}
	return &cached{inner: c, ttl: ttl, now: now}
}

type cached struct {
	inner prometheus.Collector
	ttl   time.Duration
	now   func() time.Time

	mu      sync.Mutex
	at      time.Time
	metrics []prometheus.Metric
}

func (c *cached) Describe(ch chan<- *prometheus.Desc) { c.inner.Describe(ch) }

func (c *cached) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.now(); c.metrics == nil || t.Sub(c.at) >= c.ttl || t.Before(c.at) {
		inner := make(chan prometheus.Metric)
		go func() { c.inner.Collect(inner); close(inner) }()
		var ms []prometheus.Metric
		for m := range inner {
			ms = append(ms, m)
		}
		c.metrics, c.at = ms, t
	}
	for _, m := range c.metrics {
		ch <- m
	}
}
