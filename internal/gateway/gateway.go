// Package gateway assembles a running mailgate from its configuration: the
// Redis client, the queue, the token manager, the HTTP API and the delivery
// workers of every route, in the roles asked for (api, worker or all).
//
// Shutdown follows what a load balancer needs: /readyz turns 503 first, the
// listener stops after a short drain delay, requests in flight finish, and
// the workers finish the message each is delivering (bounded by the SMTP
// timeouts) and record its outcome; a message not yet taken stays queued.
// Nothing accepted is lost by a stop.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/api"
	"github.com/mailgate/mailgate/internal/bodybudget"
	"github.com/mailgate/mailgate/internal/certreload"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/delivery"
	"github.com/mailgate/mailgate/internal/intake"
	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/internal/metrics"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/routehealth"
	"github.com/mailgate/mailgate/internal/smtpd"
	"github.com/mailgate/mailgate/internal/smtppass"
	"github.com/mailgate/mailgate/internal/token"
)

// Roles a process can run.
const (
	RoleAll    = "all"
	RoleAPI    = "api"
	RoleWorker = "worker"
)

// Options configure a Gateway.
type Options struct {
	Config *config.Config
	Role   string
	Log    *slog.Logger
	// Listener, when set, is used instead of listening on Config.Listen.
	Listener net.Listener
	// Redis, when set, is used instead of a client for Config.Redis.
	Redis redis.UniversalClient
	// DrainDelay is how long /readyz answers 503 before the listener closes.
	DrainDelay time.Duration
	// ShutdownTimeout bounds the whole stop.
	ShutdownTimeout time.Duration
	Now             func() time.Time
	// WorkerHooks observe every worker (tests use them to follow deliveries).
	WorkerHooks *delivery.Hooks
	// NeverEvicts skips the maxmemory-policy check, for a store known not
	// to evict (mailgate dev's embedded one, which has no such setting).
	NeverEvicts bool
}

// Gateway is a configured mailgate process.
type Gateway struct {
	opts     Options
	cfg      *config.Config
	rdb      redis.UniversalClient
	ownRedis bool
	queue    *queue.Queue
	health   *routehealth.Health
	limiter  *limits.Limiter
	registry *prometheus.Registry
	// deliveryMetrics and oauthMetrics are the workers' (nil in the api role).
	deliveryMetrics *metrics.Delivery
	oauthMetrics    *metrics.OAuth
	tokens          *token.Manager
	api             *api.Server
	smtp            *smtpd.Server // nil unless smtp.listen is set (roles api and all)
	// bodies bounds the message bodies both doors hold in memory at once;
	// intake is the accept step both doors share.
	bodies   *bodybudget.Budget
	intake   *intake.Intake
	listener net.Listener
	// metricsLn serves /metrics alone, when metrics.listen is set.
	metricsLn net.Listener
	// tlsConfig, when tls.cert_file is set, makes both listeners HTTPS.
	tlsConfig *tls.Config
	workers   []*delivery.Worker
	log       *slog.Logger

	// revocations is the tokens' revocation list, held in memory while
	// Run follows it (roles api and all).
	revocations *token.Revocations
}

// New builds a Gateway; nothing runs until Run.
func New(o Options) (*Gateway, error) {
	if o.Role == "" {
		o.Role = RoleAll
	}
	if o.Role != RoleAll && o.Role != RoleAPI && o.Role != RoleWorker {
		return nil, fmt.Errorf("--role must be all, api or worker, not %q", o.Role)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	cfg := o.Config
	g := &Gateway{opts: o, cfg: cfg, log: o.Log, rdb: o.Redis}
	if g.rdb == nil {
		rdb, err := NewRedisClient(cfg.Redis)
		if err != nil {
			return nil, err
		}
		g.rdb, g.ownRedis = rdb, true
	}
	g.queue = queue.New(g.rdb, queue.Options{Prefix: cfg.Redis.KeyPrefix, Retention: cfg.Retention, Now: o.Now,
		MinReplicas: cfg.Redis.MinReplicasAcked, ReplicaTimeout: cfg.Redis.ReplicaAckTimeout})
	g.health = routehealth.New(g.rdb, cfg.Redis.KeyPrefix, o.Now)
	g.limiter = limits.New(g.rdb, cfg.Redis.KeyPrefix, o.Now)
	g.revocations = token.NewRevocations(g.rdb, cfg.Redis.KeyPrefix, o.Now)
	tokens, err := Tokens(cfg, g.revocations, o.Now)
	if err != nil {
		return nil, err
	}
	g.tokens = tokens

	g.registry = prometheus.NewRegistry()
	g.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := g.checkEviction(); err != nil {
		g.closeRedis()
		return nil, err
	}
	if cfg.TLS.CertFile != "" {
		certs, err := certreload.New(cfg.TLS.CertFile, cfg.TLS.KeyFile, o.Log)
		if err != nil {
			g.closeRedis()
			return nil, err
		}
		g.tlsConfig = &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	routes := make([]string, len(cfg.Routes))
	for i, r := range cfg.Routes {
		routes[i] = r.Name
	}
	// Cached: each scrape would otherwise cost Redis reads for every route.
	g.registry.MustRegister(metrics.Cached(metrics.NewQueueCollector(routes, g.depth), queueMetricsTTL, o.Now))
	var apiMetrics http.Handler
	if cfg.Metrics.Listen == "" {
		apiMetrics = g.metricsHandler()
	}
	if o.Role != RoleWorker {
		reg := g.registry
		var limiter *redis_rate.Limiter
		for _, a := range cfg.Apps {
			if a.RateLimit.PerMinute > 0 {
				limiter = redis_rate.NewLimiter(g.rdb)
				break
			}
		}
		metrics.RevocationsInMemory(reg, g.revocations.InMemory)
		g.bodies = bodybudget.New(cfg.API.MaxInFlightBytes, cfg.API.MaxInFlightBytesPerApp)
		// One accept step and one set of submission metrics for both doors.
		submissions := metrics.NewAPI(reg)
		g.intake = intake.New(intake.Options{Queue: g.queue, Metrics: submissions, Log: o.Log})
		g.api, err = api.New(api.Options{Config: cfg, Queue: g.queue, Tokens: tokens, Limiter: limiter,
			Health: g.health, Usage: g.usage, Now: o.Now, Log: o.Log, Registry: reg, Budget: g.bodies,
			Submissions: submissions, Intake: g.intake,
			MinBodyRate: cfg.API.MinBodyRate, BodyRateGrace: cfg.API.BodyRateGrace, Metrics: apiMetrics})
		if err != nil {
			return nil, err
		}
		g.listener = o.Listener
		if g.listener == nil {
			if g.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
				return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
			}
		}
		if cfg.SMTP.Listen != "" {
			if err := g.buildSMTP(); err != nil {
				g.closeListeners()
				g.closeRedis()
				return nil, err
			}
		}
	}
	if o.Role == RoleWorker {
		// A worker-only process still answers probes and scrapes.
		g.listener = o.Listener
		if g.listener == nil {
			if g.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
				return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
			}
		}
	}
	if cfg.Metrics.Listen != "" {
		if g.metricsLn, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			g.closeListeners()
			g.closeRedis()
			return nil, fmt.Errorf("metrics.listen %s: %w", cfg.Metrics.Listen, err)
		}
	}
	if o.Role != RoleAPI {
		g.deliveryMetrics = metrics.NewDelivery(g.registry)
		var xoauth2 []string
		for _, r := range cfg.Routes {
			if r.Auth.Mechanism == config.MechXOAUTH2 {
				xoauth2 = append(xoauth2, r.Name)
			}
		}
		g.oauthMetrics = metrics.NewOAuth(g.registry, xoauth2)
		if err := g.buildWorkers(); err != nil {
			g.closeListeners()
			return nil, err
		}
	}
	return g, nil
}

// buildSMTP prepares the SMTP door, with the API's token manager and the
// queue, and opens its listeners.
func (g *Gateway) buildSMTP() error {
	policies, err := g.cfg.Policies()
	if err != nil {
		return err
	}
	door := smtpd.NewIntakeDoor(policies, g.intake)
	g.smtp, err = smtpd.New(smtpd.Options{Config: g.cfg, Door: door, Tokens: g.tokens,
		Passwords: smtppass.NewVerifier(smtppass.New(g.rdb, g.cfg.Redis.KeyPrefix, g.opts.Now), 0),
		Metrics:   metrics.NewSMTP(g.registry), Log: g.log.With("door", "smtp"), Now: g.opts.Now, NewID: queue.NewID,
		Budget: g.bodies})
	return err
}

// checkEviction refuses to start on a Redis that may evict keys, unless
// redis.allow_eviction accepts the risk (package eviction explains it).
// A policy that cannot be read (Redis down, CONFIG and INFO both refused)
// does not stop the start: the process must be able to come up before Redis
// does. Every outcome but noeviction is logged as a warning.
func (g *Gateway) checkEviction() error {
	if g.opts.NeverEvicts {
		metrics.EvictionPolicyOK(g.registry, true)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res := ReadEviction(ctx, g.rdb)
	metrics.EvictionPolicyOK(g.registry, res.Safe())
	switch {
	case res.Safe():
		return nil
	case !res.Known():
		g.log.Warn("cannot read Redis's maxmemory-policy; make sure it is noeviction, or Redis may silently delete queued mail, idempotency keys and token revocations",
			"err", res.Err)
		return nil
	case !g.cfg.Redis.AllowEviction:
		return errors.New(res.Problem())
	}
	g.log.Warn("RISK ACCEPTED by redis.allow_eviction: Redis may evict keys and mailgate would silently lose queued mail, idempotency keys and token revocations",
		"maxmemory_policy", res.Policy)
	return nil
}

// closeListeners closes the listeners New opened (not one passed in).
func (g *Gateway) closeListeners() {
	if g.listener != nil && g.opts.Listener == nil {
		g.listener.Close()
	}
	if g.metricsLn != nil {
		g.metricsLn.Close()
	}
}

func (g *Gateway) closeRedis() {
	if g.ownRedis {
		_ = g.rdb.Close()
	}
}

func (g *Gateway) buildWorkers() error {
	d := g.cfg.Delivery
	for i := range g.cfg.Routes {
		route := &g.cfg.Routes[i]
		name := route.Name
		auth, err := delivery.AuthenticatorWith(route, func(err error) { g.oauthMetrics.TokenRequest(name, err) })
		if err != nil {
			return err
		}
		dialer, err := delivery.NewDialer(route, delivery.DialerOptions{HelloName: d.HelloName,
			ConnectTimeout: d.ConnectTimeout, CommandTimeout: d.CommandTimeout, Auth: auth,
			RetryAuthOnce: route.Auth.Mechanism == config.MechXOAUTH2, Now: g.opts.Now})
		if err != nil {
			return err
		}
		n := route.Limits.MaxConnections
		if n <= 0 {
			n = 1
		}
		for w := 0; w < n; w++ {
			g.workers = append(g.workers, delivery.NewWorker(delivery.WorkerOptions{
				Route: route, Queue: g.queue, Dialer: dialer, Policy: delivery.PolicyFrom(d),
				Now: g.opts.Now, Log: g.log.With("worker", w), Hooks: g.opts.WorkerHooks, Health: g.health, Limiter: g.limiter,
				Metrics: g.deliveryMetrics}))
		}
	}
	return nil
}

// depth reads one route's queue and hold state, for the metrics.
func (g *Gateway) depth(ctx context.Context, route string) (metrics.Depth, error) {
	b, err := g.queue.Backlog(ctx, route)
	if err != nil {
		return metrics.Depth{}, err
	}
	held, _, _, err := g.health.State(ctx, route)
	if err != nil {
		return metrics.Depth{}, err
	}
	d := metrics.Depth{Waiting: b.Ready, Sending: b.InFlight, Failed: b.Failed, Held: held, Bytes: b.Bytes}
	if r := g.cfg.Route(route); r != nil {
		d.MaxMessages, d.MaxBytes = r.Queue.MaxMessages, r.Queue.MaxBytes
		d.Full = queue.Full(b.Ready+b.InFlight, b.Bytes, d.MaxMessages, d.MaxBytes)
	}
	if b.HasDue {
		d.Lag = g.opts.Now().Sub(b.OldestDue)
	}
	return d, nil
}

// opsHandler serves /healthz, /readyz and /metrics in the worker role,
// where there is no API.
func (g *Gateway) opsHandler(draining *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if draining.Load() || g.queue.Ping(ctx) != nil {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"type":"about:blank","title":"Not ready","status":503,"code":"not_ready"}` + "\n"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	if g.cfg.Metrics.Listen == "" {
		mux.Handle("GET /metrics", g.metricsHandler())
	}
	return mux
}

// queueMetricsTTL is how long the queue metrics read from Redis are reused:
// short against a scrape interval (15 s to 1 m), long enough that several
// scrapers or a dashboard add no Redis work.
const queueMetricsTTL = 5 * time.Second

// metricsHandler serves the registry, behind metrics.token when set.
func (g *Gateway) metricsHandler() http.Handler {
	return metrics.Handler(g.registry, g.cfg.Metrics.Token)
}

// MetricsAddr is the address of the metrics listener ("" without
// metrics.listen).
func (g *Gateway) MetricsAddr() string {
	if g.metricsLn == nil {
		return ""
	}
	return g.metricsLn.Addr().String()
}

// Tokens is the token manager of the installation cfg describes: it signs
// with auth.signing_key, verifies with it and auth.previous_signing_keys,
// and binds tokens to auth.audience. revoked may be nil for a manager that
// only issues; now may be nil.
func Tokens(cfg *config.Config, revoked *token.Revocations, now func() time.Time) (*token.Manager, error) {
	return token.New(token.Options{Key: []byte(cfg.Auth.SigningKey), PreviousKeys: cfg.Auth.PreviousKeys(),
		Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience, AcceptNoAudience: cfg.Auth.AcceptTokensWithoutAudience,
		Revoked: revoked, Now: now})
}

// usage reports a route's limit usage per mailbox, for GET /v1/routes.
func (g *Gateway) usage(ctx context.Context, route string) (map[string]limits.Usage, error) {
	r := g.cfg.Route(route)
	if r == nil {
		return nil, nil
	}
	return delivery.UsageOf(ctx, g.limiter, r)
}

// Addr is the API's listening address ("" in the worker role).
func (g *Gateway) Addr() string {
	if g.listener == nil {
		return ""
	}
	return g.listener.Addr().String()
}

// migrateLanes puts messages queued by an older mailgate, which knew no
// lanes, where the workers' claims find them (queue.Migrate). A route whose
// migration fails (Redis away) is tried again in the background until it
// works; its other messages are delivered meanwhile.
func (g *Gateway) migrateLanes(ctx context.Context, wg *sync.WaitGroup) {
	for i := range g.cfg.Routes {
		route := g.cfg.Routes[i].Name
		try := func() bool {
			n, err := g.queue.Migrate(ctx, route)
			if err != nil {
				g.log.Warn("cannot move older queued messages into lanes yet; retrying", "route", route, "err", err)
				return false
			}
			if n > 0 {
				g.log.Info("moved messages queued by an older version into lanes", "route", route, "count", n)
			}
			return true
		}
		if try() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t := time.NewTimer(5 * time.Second)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				if ctx.Err() == nil && try() {
					return
				}
			}
		}()
	}
}

// SMTPAddr is the SMTP door's plain listener ("" when it is off);
// SMTPTLSAddr its implicit-TLS one.
func (g *Gateway) SMTPAddr() string {
	if g.smtp == nil {
		return ""
	}
	return g.smtp.Addr()
}

// SMTPTLSAddr is the SMTP door's implicit-TLS listener, "" without one.
func (g *Gateway) SMTPTLSAddr() string {
	if g.smtp == nil {
		return ""
	}
	return g.smtp.TLSAddr()
}

// Queue is the gateway's queue (benchmarks enqueue through it).
func (g *Gateway) Queue() *queue.Queue { return g.queue }

// Tokens is the gateway's token manager.
func (g *Gateway) Tokens() *token.Manager { return g.tokens }

// Run serves until ctx is cancelled, then stops gracefully.
func (g *Gateway) Run(ctx context.Context) error {
	workCtx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()
	var wg sync.WaitGroup
	if len(g.workers) > 0 {
		g.migrateLanes(workCtx, &wg)
	}
	for _, w := range g.workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.Run(workCtx) }()
	}
	if g.opts.Role != RoleWorker {
		// Until it has loaded the list, and whenever it loses the channel,
		// each request asks Redis (package token, Revocations).
		wg.Add(1)
		go func() { defer wg.Done(); g.revocations.Watch(workCtx, g.log) }()
	}

	var srv *http.Server
	var draining atomic.Bool
	serveErr := make(chan error, 2)
	if g.listener != nil {
		handler := g.opsHandler(&draining)
		if g.api != nil {
			handler = g.api.Handler()
		}
		srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)}
		go func() { serveErr <- g.serve(srv, g.listener) }()
		if g.api != nil {
			g.log.Info("API listening", "addr", g.Addr(), "https", g.tlsConfig != nil)
		} else {
			g.log.Info("health and metrics listening", "addr", g.Addr(), "https", g.tlsConfig != nil)
		}
	}
	if g.smtp != nil {
		go func() {
			if err := g.smtp.Serve(); err != nil {
				serveErr <- fmt.Errorf("SMTP door: %w", err)
			}
		}()
		g.log.Info("SMTP listening", "addr", g.smtp.Addr(), "tls_addr", g.smtp.TLSAddr())
	}
	// Logged at every start, so that a risk accepted for a test or an
	// emergency stays in sight for as long as it is configured.
	for _, w := range g.cfg.Warnings() {
		g.log.Warn("risky setting: "+w.Message, "key", w.Key)
	}
	var metricsSrv *http.Server
	if g.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", g.metricsHandler())
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
			IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)}
		go func() {
			if err := g.serve(metricsSrv, g.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("metrics listener failed", "err", err)
			}
		}()
		g.log.Info("metrics listening", "addr", g.MetricsAddr(), "https", g.tlsConfig != nil)
	}
	g.log.Info("mailgate running", "role", g.opts.Role, "workers", len(g.workers), "routes", len(g.cfg.Routes))

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = err
		}
	}

	g.log.Info("stopping")
	deadline, cancel := context.WithTimeout(context.Background(), g.opts.ShutdownTimeout)
	defer cancel()
	if srv != nil {
		draining.Store(true)
		if g.api != nil {
			g.api.Drain()
		}
		sleepCtx(deadline, g.opts.DrainDelay)
		if err := srv.Shutdown(deadline); err != nil {
			g.log.Warn("API did not finish its requests in time", "err", err)
		}
	}
	if g.smtp != nil {
		if err := g.smtp.Shutdown(deadline); err != nil {
			g.log.Warn("SMTP transactions did not end in time and were cut", "err", err)
		}
	}
	if metricsSrv != nil {
		// Scraped until the end: the last numbers of a stop are worth having.
		defer func() { _ = metricsSrv.Close() }()
	}
	stopWorkers()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-deadline.Done():
		g.log.Warn("workers did not finish in time; their messages return to the queue when their leases expire")
	}
	if g.ownRedis {
		_ = g.rdb.Close()
	}
	g.log.Info("stopped")
	return runErr
}

// serve serves srv on ln, over TLS when tls.cert_file is set.
func (g *Gateway) serve(srv *http.Server, ln net.Listener) error {
	if g.tlsConfig == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = g.tlsConfig.Clone()
	return srv.ServeTLS(ln, "", "")
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
