// Package metrics defines mailgate's delivery metrics (Prometheus,
// client_golang). They are registered on a registry passed in, never on the
// global one, so two gateways in one process (as in tests) do not collide.
//
// Queue depths are read from Redis when Prometheus scrapes, not kept in
// memory: every instance then reports the same, shared truth.
package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Delivery is what the workers record.
type Delivery struct {
	outcomes *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewDelivery registers the delivery metrics on reg.
func NewDelivery(reg prometheus.Registerer) *Delivery {
	d := &Delivery{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_delivery_outcomes_total",
			Help: "Outcomes of taken messages, by route and outcome (sent, deferred, failed, waiting: handed back by a limit or a hold, no attempt made).",
		}, []string{"route", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailgate_delivery_attempt_seconds",
			Help:    "Time of delivery attempts (connect when needed, MAIL, RCPT, DATA), by route.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
	}
	reg.MustRegister(d.outcomes, d.duration)
	return d
}

// Outcome records what became of one taken message.
func (d *Delivery) Outcome(route, outcome string) {
	if d != nil {
		d.outcomes.WithLabelValues(route, outcome).Inc()
	}
}

// Attempt records the duration of one attempt.
func (d *Delivery) Attempt(route string, took time.Duration) {
	if d != nil {
		d.duration.WithLabelValues(route).Observe(took.Seconds())
	}
}

// Depth is one route's queue as Redis holds it.
type Depth struct {
	Waiting, Sending, Failed int64
	Held                     bool
	// Lag is how long the earliest-due waiting message has been due without
	// a worker taking it: 0 when none is due. It grows while a route is held
	// or its workers cannot keep up, and stays 0 while messages merely wait
	// out a backoff.
	Lag time.Duration
	// Bytes of the waiting and sending messages, and the route's queue
	// limits (route queue.max_messages, queue.max_bytes) they are held to.
	Bytes, MaxMessages, MaxBytes int64
	// Full is true while the route's queue refuses new messages (503
	// queue_full; queue.Full).
	Full bool
}

// QueueCollector reports every route's queue depth and hold state at
// scrape time.
type QueueCollector struct {
	routes []string
	read   func(ctx context.Context, route string) (Depth, error)
	depth  *prometheus.Desc
	held   *prometheus.Desc
	lag    *prometheus.Desc
	bytes  *prometheus.Desc
	limit  *prometheus.Desc
	full   *prometheus.Desc
	up     *prometheus.Desc
}

// NewQueueCollector returns a collector over routes using read.
func NewQueueCollector(routes []string, read func(ctx context.Context, route string) (Depth, error)) *QueueCollector {
	return &QueueCollector{
		routes: routes,
		read:   read,
		depth: prometheus.NewDesc("mailgate_queue_messages",
			"Messages of a route by state (waiting: queued or deferred; sending; failed: kept dead letters).",
			[]string{"route", "state"}, nil),
		held: prometheus.NewDesc("mailgate_route_held",
			"1 while a route is held after a configuration error or a block, else 0.", []string{"route"}, nil),
		lag: prometheus.NewDesc("mailgate_queue_lag_seconds",
			"Seconds the earliest-due waiting message of a route has been due without being taken (0 when none is due): how far delivery lags behind.",
			[]string{"route"}, nil),
		bytes: prometheus.NewDesc("mailgate_queue_bytes",
			"Bytes of a route's waiting and sending messages, which its queue.max_bytes bounds.",
			[]string{"route"}, nil),
		limit: prometheus.NewDesc("mailgate_queue_limit",
			"A route's queue limit: how many messages (unit messages, queue.max_messages) or bytes (unit bytes, queue.max_bytes) may be waiting and sending at once.",
			[]string{"route", "unit"}, nil),
		full: prometheus.NewDesc("mailgate_queue_full",
			"1 while a route's queue is at its limit and submissions for it get 503 queue_full, else 0.",
			[]string{"route"}, nil),
		up: prometheus.NewDesc("mailgate_queue_up",
			"1 when the queue in Redis could be read at this scrape, else 0.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.held
	ch <- c.lag
	ch <- c.bytes
	ch <- c.limit
	ch <- c.full
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	up := 1.0
	for _, r := range c.routes {
		d, err := c.read(ctx, r)
		if err != nil {
			up = 0
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(d.Waiting), r, "waiting")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(d.Sending), r, "sending")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(d.Failed), r, "failed")
		held := 0.0
		if d.Held {
			held = 1
		}
		ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, held, r)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, max(d.Lag, 0).Seconds(), r)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(d.Bytes), r)
		if d.MaxMessages > 0 {
			ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(d.MaxMessages), r, "messages")
		}
		if d.MaxBytes > 0 {
			ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(d.MaxBytes), r, "bytes")
		}
		full := 0.0
		if d.Full {
			full = 1
		}
		ch <- prometheus.MustNewConstMetric(c.full, prometheus.GaugeValue, full, r)
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
}

// API is what the HTTP API records.
type API struct {
	submissions *prometheus.CounterVec
	bytes       *prometheus.CounterVec

	// The in-flight body budget (api/budget.go).
	budgetSize    *prometheus.GaugeVec
	budgetInUse   *prometheus.GaugeVec
	budgetRefused *prometheus.CounterVec
	slowBodies    *prometheus.CounterVec
}

// NewAPI registers the API's metrics on reg.
func NewAPI(reg prometheus.Registerer) *API {
	a := &API{
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_submissions_total",
			Help: "Submissions that reached the queue step, by app and result (accepted, idempotent_replay, queue_unavailable, not_replicated: stored but not confirmed by redis.min_replicas_acked replicas in time, queue_full: the route's queue is at its limit, app_queue_full: the app's share of it is).",
		}, []string{"app", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_submitted_bytes_total",
			Help: "Bytes of accepted messages, by app.",
		}, []string{"app"}),
	}
	a.budgetSize = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mailgate_api_body_budget_bytes",
		Help: "Size of the in-flight request body budget: scope total is the whole budget, scope app one app's share.",
	}, []string{"scope"})
	a.budgetInUse = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mailgate_api_body_budget_in_use_bytes",
		Help: "Request body bytes reserved by requests in flight, by app.",
	}, []string{"app"})
	a.budgetRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailgate_api_body_budget_refusals_total",
		Help: "Requests refused before their body was read, by app and reason (full: the whole budget, 503; app_share: the app's share, 429).",
	}, []string{"app", "reason"})
	a.slowBodies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailgate_api_slow_bodies_total",
		Help: "Requests cut off with 408 because their body arrived below the minimum rate, by app.",
	}, []string{"app"})
	reg.MustRegister(a.submissions, a.bytes, a.budgetSize, a.budgetInUse, a.budgetRefused, a.slowBodies)
	return a
}

// The budget's methods do nothing on a nil *API, for tests that build a
// bare Server.

// BudgetSize records the body budget's size and one app's share of it.
func (a *API) BudgetSize(total, perApp int64) {
	if a == nil {
		return
	}
	a.budgetSize.WithLabelValues("total").Set(float64(total))
	a.budgetSize.WithLabelValues("app").Set(float64(perApp))
}

// BudgetInUse records the body bytes an app has in flight.
func (a *API) BudgetInUse(app string, bytes int64) {
	if a == nil {
		return
	}
	a.budgetInUse.WithLabelValues(app).Set(float64(bytes))
}

// BudgetRefused counts a request refused by the body budget.
func (a *API) BudgetRefused(app, reason string) {
	if a == nil {
		return
	}
	a.budgetRefused.WithLabelValues(app, reason).Inc()
}

// SlowBody counts a request cut off for a body below the minimum rate.
func (a *API) SlowBody(app string) {
	if a == nil {
		return
	}
	a.slowBodies.WithLabelValues(app).Inc()
}

// Submission records one submission's result, and its size when accepted.
func (a *API) Submission(app, result string, size int) {
	a.submissions.WithLabelValues(app, result).Inc()
	if result == "accepted" {
		a.bytes.WithLabelValues(app).Add(float64(size))
	}
}

// OAuth counts the token requests to Entra ID of the XOAUTH2 routes.
type OAuth struct {
	requests *prometheus.CounterVec
}

// NewOAuth registers the token request counter on reg, with both results
// of every route in routes at zero, so a rate over them exists before the
// first failure.
func NewOAuth(reg prometheus.Registerer, routes []string) *OAuth {
	o := &OAuth{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailgate_oauth_token_requests_total",
		Help: "Access token requests to Entra ID, by route and result (success, failure). Failures while a cached token is still valid do not stop delivery yet.",
	}, []string{"route", "result"})}
	reg.MustRegister(o.requests)
	for _, r := range routes {
		o.requests.WithLabelValues(r, "success")
		o.requests.WithLabelValues(r, "failure")
	}
	return o
}

// TokenRequest records the result of one token request of route.
func (o *OAuth) TokenRequest(route string, err error) {
	if o == nil {
		return
	}
	result := "success"
	if err != nil {
		result = "failure"
	}
	o.requests.WithLabelValues(route, result).Inc()
}
