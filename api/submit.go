package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/apppolicy"
	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/intake"
	"github.com/mailgate/mailgate/internal/keys"
	"github.com/mailgate/mailgate/internal/queue"
)

// submission is a built-message request, whatever style it came in.
type submission struct {
	in       compose.Input
	metadata map[string]string
	template string          // a template to render subject, text and html from
	data     json.RawMessage // the template's data
	sendAt   string          // RFC 3339, "" for now
}

func (s *Server) submit(c *echo.Context) error {
	app, err := requireApp(c)
	if err != nil {
		return err
	}
	// A built message is larger than the request that describes it only by
	// headers and MIME framing; base64 in JSON makes the request about 4/3 of
	// the attachments. Reading at most twice the message limit keeps
	// memory bounded while letting every acceptable message through.
	limit := 2*app.maxBytes + 64<<10
	// The budget comes before the rate limit: a request refused for the
	// server's load should not cost the app its quota.
	release, err := s.admitBody(c, app, limit)
	if err != nil {
		return err
	}
	defer release()
	if err := s.rateLimit(c, app); err != nil {
		return err
	}
	mt, params, err := mime.ParseMediaType(c.Request().Header.Get("Content-Type"))
	if err != nil {
		return unsupportedType("")
	}
	body := s.limitedBody(c, limit)
	size := c.Request().ContentLength
	var sub *submission
	switch mt {
	case "application/json":
		sub, err = parseJSON(body, size)
	case "multipart/form-data":
		sub, err = parseMultipart(body, size, params["boundary"])
	case "application/x-www-form-urlencoded":
		sub, err = parseURLEncoded(body, size)
	case "text/plain":
		sub, err = parsePlain(c, body, size, params["charset"])
	default:
		return unsupportedType(mt)
	}
	if err != nil {
		return s.bodyError(err, app)
	}
	if sub.in.From == "" {
		sub.in.From = app.defaultFrom
	}
	opts, err := s.submissionOptions(sub.sendAt)
	if err != nil {
		return err
	}
	if err := s.applyTemplate(sub); err != nil {
		return err
	}
	// The cheap policy checks come before rendering: a forged From or a
	// recipient list of ten thousand costs nothing to refuse.
	if p := checkRecipientCount(app, len(sub.in.To)+len(sub.in.Cc)+len(sub.in.Bcc)); p != nil {
		return p
	}
	now := s.now()
	id := queue.NewID(now)
	msg, err := compose.Build(sub.in, compose.Options{Now: now, MessageIDLocal: id})
	if err != nil {
		return composeProblem(err)
	}
	return s.accept(c, app, id, msg, sub.metadata, opts)
}

func (s *Server) submitRaw(c *echo.Context) error {
	app, err := requireApp(c)
	if err != nil {
		return err
	}
	release, err := s.admitBody(c, app, app.maxBytes)
	if err != nil {
		return err
	}
	defer release()
	if err := s.rateLimit(c, app); err != nil {
		return err
	}
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get("Content-Type"))
	if err != nil || mt != "message/rfc822" {
		return unsupportedType(mt)
	}
	raw, err := readSized(s.limitedBody(c, app.maxBytes), c.Request().ContentLength)
	if err != nil {
		return s.bodyError(fmt.Errorf("read body: %w", err), app)
	}
	q, err := query(c)
	if err != nil {
		return err
	}
	if p := checkRecipientCount(app, len(q["to"])); p != nil {
		return p
	}
	opts, err := s.submissionOptions(q.Get("send_at"))
	if err != nil {
		return err
	}
	delete(q, "send_at")
	now := s.now()
	id := queue.NewID(now)
	msg, err := compose.ParseRaw(raw, compose.Options{Now: now, MessageIDLocal: id,
		EnvelopeTo: q["to"], DefaultFrom: app.defaultFrom})
	if err != nil {
		return composeProblem(err)
	}
	return s.accept(c, app, id, msg, nil, opts)
}

// accept hands a rendered message to the intake, which every door shares,
// and maps its answer to HTTP. opts carries what the door adds: a send_at,
// an idempotency key it derived itself (used when the client sent none).
func (s *Server) accept(c *echo.Context, app *appPolicy, id string, msg *compose.Message, metadata map[string]string, opts acceptOptions) error {
	key, keyTTL := c.Request().Header.Get("Idempotency-Key"), time.Duration(0)
	if key == "" {
		key, keyTTL = opts.derivedKey, opts.derivedKeyTTL
	}
	res, err := s.intake.Accept(c.Request().Context(), app.Policy, intake.Submission{ID: id, Message: msg,
		IdempotencyKey: key, KeyTTL: keyTTL, SendAt: opts.sendAt, Metadata: metadata})
	if err != nil {
		return s.acceptError(err, app)
	}
	c.Response().Header().Set("Location", "/v1/messages/"+res.ID)
	status := queue.StatusQueued
	if !opts.sendAt.IsZero() {
		status = queue.StatusScheduled
	}
	if b := appendAccepted(nil, res.ID, status); b != nil {
		return c.Blob(http.StatusAccepted, echo.MIMEApplicationJSON, b)
	}
	return c.JSON(http.StatusAccepted, map[string]string{"id": res.ID, "status": status})
}

// acceptError maps what the intake refused or could not do to HTTP. It is
// apart from accept so that the targets of errors.As, which escape, are
// only allocated for an error.
func (s *Server) acceptError(err error, app *appPolicy) error {
	var refused *apppolicy.Refusal
	var unavailable *intake.QueueError
	var notReplicated *queue.NotReplicatedError
	var full *intake.FullError
	switch {
	case errors.As(err, &refused):
		return refusalProblem(refused)
	case errors.As(err, &full):
		return fullProblem(full, app.route)
	case errors.Is(err, intake.ErrIdempotencyKey):
		return errValidation("Idempotency-Key must be at most 255 characters on one line",
			FieldError{Field: "Idempotency-Key", Message: "too long or not one line"})
	case errors.As(err, &notReplicated):
		p := errQueueUnavailable()
		// Stored on the master, but not yet on the replicas the operator
		// asked for (redis.min_replicas_acked): a failover now could lose
		// it, so no 202; a retry settles it without a duplicate.
		p.Detail = fmt.Sprintf("the message may be stored but is not yet replicated (%d of %d replicas "+
			"confirmed it within %s); retry with the same Idempotency-Key to be sure it is sent once "+
			"(message id %s)", notReplicated.Got, notReplicated.Want, notReplicated.Timeout, notReplicated.ID)
		return p
	case errors.As(err, &unavailable):
		p := errQueueUnavailable()
		// Redis went away while this message was being stored, and did not
		// come back in time to say whether it was: say so, rather than
		// promise what cannot be known.
		p.Detail = "Redis was unreachable for " + s.intake.RetryFor().String() + "; the message was not stored. " +
			"Retry, with the same Idempotency-Key (message id " + unavailable.ID + ")"
		if unavailable.MaybeStored {
			p.Detail = "Redis failed while the message was being stored and did not recover within " +
				s.intake.RetryFor().String() + "; whether it was stored cannot be known until it does, and a " +
				"stored message is delivered. Retry with the same Idempotency-Key to be sure it is sent once " +
				"(message id " + unavailable.ID + ")"
		}
		return p
	}
	return err
}

// fullProblem answers a submission refused for a full queue: 429 when the
// app's own share is used up (the app is the one to slow down, other apps
// are still served), 503 when the route's queue is (the gateway cannot take
// more for the route, whoever asks). Nothing was stored either way.
func fullProblem(f *intake.FullError, route string) *Problem {
	var p *Problem
	if f.App {
		p = problem(http.StatusTooManyRequests, CodeAppQueueFull, "App's queue share full",
			"this app already has as many messages or bytes waiting for route "+route+
				" as its share allows (app queue.max_messages / queue.max_bytes); nothing was stored, retry later")
	} else {
		p = problem(http.StatusServiceUnavailable, CodeQueueFull, "Route queue full",
			"route "+route+" already has as many messages or bytes waiting as it may hold "+
				"(route queue.max_messages / queue.max_bytes); nothing was stored, retry later")
	}
	p.retryAfter = f.RetryAfter
	return p
}

// refusalProblem maps a policy refusal to its problem+json.
func refusalProblem(r *apppolicy.Refusal) *Problem {
	fields := make([]FieldError, len(r.Fields))
	for i, f := range r.Fields {
		fields[i] = FieldError{Field: f.Field, Message: f.Message}
	}
	switch r.Code {
	case apppolicy.FromNotAllowed:
		return problem(http.StatusForbidden, CodeFromNotAllowed, "From address not allowed", r.Reason, fields...)
	case apppolicy.RecipientNotAllowed:
		return problem(http.StatusForbidden, CodeRecipientNotAllowed, "Recipient not allowed", r.Reason, fields...)
	case apppolicy.TooManyRecipients:
		return problem(http.StatusUnprocessableEntity, CodeTooManyRecipients, "Too many recipients", r.Reason, fields...)
	case apppolicy.MessageTooLarge:
		return problem(http.StatusRequestEntityTooLarge, CodeTooLarge, "Message too large", r.Reason, fields...)
	}
	return problem(http.StatusForbidden, string(r.Code), "Not allowed", r.Reason, fields...)
}

func (s *Server) rateLimit(c *echo.Context, app *appPolicy) error {
	if s.limiter == nil || app.perMinute <= 0 {
		return nil
	}
	// Under the installation's key prefix: two installations sharing one
	// Redis must not share their apps' limits.
	key := keys.New(s.cfg.Redis.KeyPrefix).APIRate(app.id)
	res, err := s.limiter.Allow(c.Request().Context(), key, redis_rate.PerMinute(app.perMinute))
	if err != nil {
		s.log.Error("rate limiter unavailable", "err", err)
		return errQueueUnavailable()
	}
	if res.Allowed == 0 {
		p := problem(http.StatusTooManyRequests, CodeRateLimited, "Rate limit exceeded",
			fmt.Sprintf("app %s may submit %d messages a minute", app.id, app.perMinute))
		p.retryAfter = res.RetryAfter
		return p
	}
	return nil
}

// checkRecipientCount refuses a recipient list that is too long before
// anything is rendered; the intake checks the rendered message again.
func checkRecipientCount(app *appPolicy, n int) error {
	if r := app.CheckRecipientCount(n); r != nil {
		return refusalProblem(r)
	}
	return nil
}

func unsupportedType(mt string) *Problem {
	got := "no Content-Type"
	if mt != "" {
		got = "Content-Type " + mt
	}
	return problem(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Unsupported media type",
		got+"; POST /v1/messages takes application/json, multipart/form-data, "+
			"application/x-www-form-urlencoded or text/plain, POST /v1/messages/raw takes message/rfc822")
}

func errTooLarge(app *appPolicy) *Problem {
	return refusalProblem(app.CheckSize(app.maxBytes + 1))
}

// bodyError maps a body that hit its read limit to 413, one that arrived
// too slowly to 408, anything else to 400.
func (s *Server) bodyError(err error, app *appPolicy) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge(app)
	}
	if errors.Is(err, errBodyTooSlow) {
		s.metrics.SlowBody(app.id)
		return errTooSlow(app, s.minBodyRate)
	}
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return errInvalidBody(err.Error())
}

func composeProblem(err error) error {
	var ce *compose.Error
	if !errors.As(err, &ce) {
		return err
	}
	fe := FieldError{Field: ce.Field, Message: ce.Message}
	if ce.Code == "invalid_body" {
		return errInvalidBody(ce.Message, fe)
	}
	return errValidation(ce.Message, fe)
}

// withTimeout bounds a Redis call made on behalf of a request.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 5*time.Second)
}
