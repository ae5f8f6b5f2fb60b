// Package api is mailgate's HTTP API: submission in four styles, message
// status, route health and the operational endpoints (README.md, "Sending
// mail"; every status and field is in openapi/openapi.yaml).
//
// A submission is checked completely at the door — token, app, From and
// recipient policy, size, syntax and header injection — and rendered to its
// final bytes once (package compose); only then is it stored, in one atomic
// step, in the Redis queue. 202 therefore means "stored"; anything that could
// not be stored is a 503 and nothing was queued. A message Exchange Online
// would refuse for its From is refused here, so it never reaches Exchange and
// never counts against the mailbox's error budget.
package api

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/mailgate/internal/bodybudget"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/intake"
	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/internal/metrics"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/templates"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/openapi"
)

// Options are the parts a Server is built from.
type Options struct {
	Config  *config.Config
	Queue   *queue.Queue
	Tokens  *token.Manager
	Limiter *redis_rate.Limiter // nil: no API rate limits
	Health  RouteHealth         // nil: every route reports ok
	// Usage reports a route's current use of its limits, per mailbox.
	Usage func(ctx context.Context, route string) (map[string]limits.Usage, error)
	Now   func() time.Time
	Log   *slog.Logger
	// Registry collects the API's metrics.
	Registry *prometheus.Registry
	// Submissions records submissions; nil means metrics.NewAPI(Registry).
	// The gateway shares one with the SMTP door, so
	// mailgate_submissions_total counts every door.
	Submissions *metrics.API
	// Intake is the accept step, shared with the SMTP door; nil means one
	// of Queue recording to Submissions.
	Intake *intake.Intake
	// Metrics serves GET /metrics; nil when metrics are served on a
	// listener of their own (metrics.listen).
	Metrics http.Handler
	// Budget bounds the bodies being received and handled at once, shared
	// with the SMTP door; nil means one of MaxInFlightBytes (0:
	// DefaultMaxInFlightBytes), MaxInFlightBytesPerApp of them per app.
	Budget                 *bodybudget.Budget
	MaxInFlightBytes       int64
	MaxInFlightBytesPerApp int64
	// MinBodyRate is the average rate in bytes a second below which a
	// request body is cut off after BodyRateGrace; 0 means
	// DefaultMinBodyRate, negative turns the cut-off off.
	MinBodyRate   int64
	BodyRateGrace time.Duration
	// MaxBatchBytes caps the body of POST /v1/messages/batch; 0 means
	// DefaultMaxBatchBytes.
	MaxBatchBytes int64
}

// RouteHealth tells whether a route is held, and why.
type RouteHealth interface {
	State(ctx context.Context, route string) (held bool, reason string, since time.Time, err error)
}

// Server is the HTTP API.
type Server struct {
	cfg      *config.Config
	apps     map[string]*appPolicy
	queue    *queue.Queue
	tokens   *token.Manager
	limiter  *redis_rate.Limiter
	health   RouteHealth
	usage    func(ctx context.Context, route string) (map[string]limits.Usage, error)
	now      func() time.Time
	log      *slog.Logger
	e        *echo.Echo
	draining atomic.Bool
	metrics  *metrics.API
	budget   *bodybudget.Budget
	intake   *intake.Intake
	// minBodyRate and bodyRateGrace are the slow-body cut-off (budget.go).
	minBodyRate   int64
	bodyRateGrace time.Duration
	// maxBatchBytes caps a batch's body (batch.go).
	maxBatchBytes int64
	// templates are the built-in and configured mail templates (webhooks.go).
	templates *templates.Set
}

// New builds the API. It fails when an app's policy does not compile, which
// config validation has normally caught before.
func New(o Options) (*Server, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Submissions == nil {
		o.Submissions = metrics.NewAPI(o.Registry)
	}
	apps, err := compilePolicies(o.Config)
	if err != nil {
		return nil, err
	}
	if o.MinBodyRate == 0 {
		o.MinBodyRate = DefaultMinBodyRate
	}
	if o.BodyRateGrace <= 0 {
		o.BodyRateGrace = DefaultBodyRateGrace
	}
	s := &Server{cfg: o.Config, apps: apps, queue: o.Queue, tokens: o.Tokens, limiter: o.Limiter,
		health: o.Health, usage: o.Usage, now: o.Now, log: o.Log, metrics: o.Submissions,
		budget:      o.Budget,
		minBodyRate: o.MinBodyRate, bodyRateGrace: o.BodyRateGrace}
	if s.budget == nil {
		s.budget = newBodyBudget(o.MaxInFlightBytes, o.MaxInFlightBytesPerApp)
	}
	s.budget.Observe(s.metrics.BudgetInUse)
	s.metrics.BudgetSize(s.budget.Max(), s.budget.PerApp())
	s.maxBatchBytes = o.MaxBatchBytes
	if s.maxBatchBytes <= 0 {
		s.maxBatchBytes = DefaultMaxBatchBytes
	}
	s.intake = o.Intake
	if s.intake == nil {
		s.intake = intake.New(intake.Options{Queue: o.Queue, Metrics: s.metrics, Log: o.Log})
	}
	if s.templates, err = newTemplateSet(o.Config, o.Now); err != nil {
		return nil, err
	}
	e := echo.NewWithConfig(echo.Config{Logger: o.Log, HTTPErrorHandler: s.handleError, JSONSerializer: jsonSerializer{}})
	e.Use(s.recoverPanics)
	e.Use(s.checkOrigin)

	e.GET("/healthz", func(c *echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.yaml", func(c *echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", openapi.Spec())
	})
	if o.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(o.Metrics))
	}

	v1 := e.Group("/v1", s.authenticate)
	v1.POST("/messages", s.submit)
	v1.POST("/messages/raw", s.submitRaw)
	v1.POST("/messages/batch", s.submitBatch)
	v1.GET("/messages/:id", s.getMessage)
	v1.DELETE("/messages/:id", s.cancelMessage)
	v1.GET("/routes", s.listRoutes)
	s.registerAdmin(v1)
	s.registerWebhooks(v1)
	s.e = e
	return s, nil
}

// Handler is the API as an http.Handler.
func (s *Server) Handler() http.Handler { return s.e }

// Drain makes /readyz answer 503, so a load balancer stops sending before
// the listener closes.
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) readyz(c *echo.Context) error {
	if s.draining.Load() {
		return problem(http.StatusServiceUnavailable, CodeNotReady, "Not ready", "shutting down")
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.queue.Ping(ctx); err != nil {
		return problem(http.StatusServiceUnavailable, CodeNotReady, "Not ready", "Redis is not reachable")
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// handleError writes every error as problem+json, including echo's own
// (unknown path, wrong method).
func (s *Server) handleError(c *echo.Context, err error) {
	if r, _ := echo.UnwrapResponse(c.Response()); r != nil && r.Committed {
		return
	}
	var p *Problem
	if !errors.As(err, &p) {
		switch code := echo.StatusCode(err); code {
		case http.StatusNotFound:
			p = problem(code, CodeNotFound, "Not found", "no such resource")
		case http.StatusMethodNotAllowed:
			p = problem(code, CodeMethodNotAllowed, "Method not allowed", c.Request().Method+" is not allowed here")
		case http.StatusRequestEntityTooLarge:
			p = problem(code, CodeTooLarge, "Message too large", "the request body is too large")
		default:
			s.log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
			p = problem(http.StatusInternalServerError, CodeInternal, "Internal error", "the request could not be processed")
		}
	}
	s.logRefusal(c, p)
	if err := writeProblem(c, p); err != nil {
		s.log.Debug("could not write error response", "err", err)
	}
}

// logRefusal leaves a trace of every refused request, so an operator can
// see why an app's mail is not getting through. Bodies and tokens are never
// logged.
func (s *Server) logRefusal(c *echo.Context, p *Problem) {
	attrs := []any{"method", c.Request().Method, "path", c.Request().URL.Path, "status", p.Status,
		"code", p.Code, "detail", p.Detail, "remote", c.RealIP()}
	if app, ok := c.Get(ctxApp).(*appPolicy); ok {
		attrs = append(attrs, "app", app.id)
	}
	switch {
	case p.Status >= 500:
		s.log.Warn("request refused", attrs...)
	case p.Status == http.StatusNotFound && c.Get(ctxClaims) == nil:
		s.log.Debug("request refused", attrs...) // scanners probing paths
	default:
		s.log.Info("request refused", attrs...)
	}
}

// recoverPanics turns a panic into a logged 500 instead of a dropped
// connection; it should never fire.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic in handler", "path", c.Request().URL.Path, "panic", r)
				err = problem(http.StatusInternalServerError, CodeInternal, "Internal error", "the request could not be processed")
			}
		}()
		return next(c)
	}
}

const (
	ctxApp    = "mailgate.app"
	ctxClaims = "mailgate.claims"
)

// authenticate accepts a token as Bearer or as the Basic password, and
// refuses it unless it verifies, belongs to a configured, enabled app (or
// is an admin token) and is not revoked. With Redis unreachable the
// revocation list cannot be read: the request is refused with 503.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		raw, ok := bearerOrBasic(c.Request().Header.Get("Authorization"))
		if !ok {
			return errUnauthorized("send the app's token as `Authorization: Bearer <token>` or as the HTTP Basic password")
		}
		claims, err := s.tokens.Verify(c.Request().Context(), raw)
		if err != nil {
			if token.IsAuthError(err) {
				return errUnauthorized(err.Error())
			}
			s.log.Error("cannot read the revocation list", "err", err)
			return errQueueUnavailable()
		}
		c.Set(ctxClaims, claims)
		if claims.Scope == token.ScopeApp {
			app := s.apps[claims.Subject]
			if app == nil {
				return errUnauthorized("the token's app is not configured")
			}
			if app.disabled {
				return problem(http.StatusForbidden, CodeAppDisabled, "App disabled", "app "+app.id+" is disabled")
			}
			c.Set(ctxApp, app)
		}
		return next(c)
	}
}

// requireApp returns the calling app, or a 403 for an admin token: admin
// tokens manage, they never send.
func requireApp(c *echo.Context) (*appPolicy, error) {
	if app, ok := c.Get(ctxApp).(*appPolicy); ok {
		return app, nil
	}
	return nil, problem(http.StatusForbidden, CodeForbidden, "Forbidden", "an admin token cannot submit or read messages; use an app token")
}

func isAdmin(c *echo.Context) bool {
	cl, ok := c.Get(ctxClaims).(*token.Claims)
	return ok && cl.Scope == token.ScopeAdmin
}

func bearerOrBasic(h string) (string, bool) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(scheme) {
	case "bearer":
		return rest, rest != ""
	case "basic":
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", false
		}
		_, pass, ok := strings.Cut(string(b), ":")
		return pass, ok && pass != ""
	}
	return "", false
}
