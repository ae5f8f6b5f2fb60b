package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/alertmail"
	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/queue"
)

// The webhook doors: a monitoring tool posts its own JSON, unchanged, and
// a template turns it into a mail. Authentication is the app's token, as
// Bearer or as the Basic password, which is what Alertmanager's and
// Grafana's http settings can send.
//
// The answers are chosen for the senders' retry logic. Alertmanager's
// webhook notifier retries a 5xx answer and gives up on every 4xx, 429
// included (notify.Retrier without RetryCodes), so on its door a transient
// problem (Redis away, the app's rate limit) is a 503 — rate_limited keeps
// its code and Retry-After — and a permanent one (a template that fails on
// this body, a recipient outside the policy) a 4xx problem. Grafana's
// webhook notifier retries nothing; the other doors answer as
// POST /v1/messages does.

// alertKeyTTL is how long the idempotency key derived from an alert
// notification's body is kept. It covers the sender's retries of one
// notification (Alertmanager gives up on a notification after its
// group_interval at the latest) while letting the same body through
// again as a repeat_interval reminder.
const alertKeyTTL = 10 * time.Minute

// grafanaMaxSkew bounds how old a signed Grafana timestamp may be.
const grafanaMaxSkew = 5 * time.Minute

func (s *Server) registerWebhooks(v1 *echo.Group) {
	v1.POST("/webhooks/alertmanager", func(c *echo.Context) error { return s.alertWebhook(c, alertmail.SourceAlertmanager) })
	v1.POST("/webhooks/grafana", func(c *echo.Context) error { return s.alertWebhook(c, alertmail.SourceGrafana) })
	v1.POST("/webhooks/:template", s.templateWebhook)
}

// webhookCall is what every webhook door reads before rendering.
type webhookCall struct {
	app  *appPolicy
	conf *config.AppWebhooks
	body []byte
	to   []string // ?to=, or the app's webhooks.to
	from string   // ?from=, or the app's from.default
	opts acceptOptions
}

func (s *Server) readWebhook(c *echo.Context) (*webhookCall, func(), error) {
	app, err := requireApp(c)
	if err != nil {
		return nil, nil, err
	}
	release, err := s.admitBody(c, app, app.maxBytes)
	if err != nil {
		return nil, nil, err
	}
	if err := s.rateLimit(c, app); err != nil {
		release()
		return nil, nil, err
	}
	fail := func(err error) (*webhookCall, func(), error) { release(); return nil, nil, err }
	q, err := query(c)
	if err != nil {
		return fail(err)
	}
	for k := range q {
		if k != "to" && k != "from" && k != "send_at" {
			return fail(errInvalidBody("unknown query parameter "+k,
				FieldError{Field: k, Message: "webhooks take to (repeatable), from and send_at"}))
		}
	}
	conf := &s.cfg.App(app.id).Webhooks
	w := &webhookCall{app: app, conf: conf, from: app.defaultFrom}
	if v := q.Get("from"); v != "" {
		w.from = v
	}
	if w.from == "" {
		return fail(errValidation("app "+app.id+" has no from.default; give ?from=", FieldError{Field: "from", Message: "required"}))
	}
	if w.to, err = appendAddrs(nil, "to", q["to"]); err != nil {
		return fail(err)
	}
	if len(w.to) == 0 {
		w.to = append([]string(nil), conf.To...)
	}
	if w.opts, err = s.submissionOptions(q.Get("send_at")); err != nil {
		return fail(err)
	}
	w.body, err = readSized(s.limitedBody(c, app.maxBytes), c.Request().ContentLength)
	if err != nil {
		return fail(s.bodyError(fmt.Errorf("read body: %w", err), app))
	}
	return w, release, nil
}

// alertWebhook is POST /v1/webhooks/alertmanager and /v1/webhooks/grafana.
func (s *Server) alertWebhook(c *echo.Context, source string) error {
	w, release, err := s.readWebhook(c)
	if err != nil {
		var p *Problem
		if source == alertmail.SourceAlertmanager && errors.As(err, &p) && p.Status == http.StatusTooManyRequests {
			p.Status = http.StatusServiceUnavailable // so that Alertmanager retries
		}
		return err
	}
	defer release()
	if source == alertmail.SourceGrafana && w.conf.GrafanaSecret != "" {
		if err := verifyGrafana(c.Request().Header, w.body, w.conf, s.now()); err != nil {
			return err
		}
	}
	n, err := alertmail.Parse(source, w.body)
	if err != nil {
		return errInvalidBody(err.Error())
	}
	name := w.conf.AlertmanagerTemplate
	if source == alertmail.SourceGrafana {
		name = w.conf.GrafanaTemplate
	}
	r, err := s.templates.Get(name).Render(n)
	if err != nil {
		return templateProblem(err)
	}
	to := append(w.to, alertmail.LabelRecipients(n, w.conf.RecipientsLabel)...)
	from, err := compose.ParseAddress(w.from)
	if err != nil {
		return composeProblem(err)
	}
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	in := compose.Input{From: w.from, To: to, Subject: r.Subject, Text: r.Text, HTML: r.HTML,
		Headers: alertmail.Thread(w.app.id, n, domain)}
	if w.opts.derivedKey == "" {
		sum := sha256.Sum256(append([]byte(source+"\x00"+c.Request().URL.RawQuery+"\x00"), w.body...))
		w.opts.derivedKey, w.opts.derivedKeyTTL = "webhook:"+hex.EncodeToString(sum[:]), alertKeyTTL
	}
	return s.acceptWebhook(c, w, in, map[string]string{"webhook": source, "group": alertmail.Topic(n)})
}

// templateWebhook is POST /v1/webhooks/{template}: any JSON body rendered
// through a named template. Its body is not hashed into an idempotency
// key: tools like Healthchecks.io may send the same body for two real
// events minutes apart. Idempotency-Key works as on every submission.
func (s *Server) templateWebhook(c *echo.Context) error {
	name := c.Param("template")
	w, release, err := s.readWebhook(c)
	if err != nil {
		return err
	}
	defer release()
	t := s.templates.Get(name)
	if t == nil {
		return problem(http.StatusNotFound, CodeNotFound, "Not found", "no template is named "+name)
	}
	var data any
	if len(strings.TrimSpace(string(w.body))) > 0 {
		if err := json.Unmarshal(w.body, &data); err != nil {
			return errInvalidBody("the body is not JSON: " + jsonError(err))
		}
	}
	r, err := t.Render(data)
	if err != nil {
		return templateProblem(err)
	}
	in := compose.Input{From: w.from, To: w.to, Subject: r.Subject, Text: r.Text, HTML: r.HTML}
	return s.acceptWebhook(c, w, in, map[string]string{"webhook": name})
}

func (s *Server) acceptWebhook(c *echo.Context, w *webhookCall, in compose.Input, metadata map[string]string) error {
	if len(in.To) == 0 {
		return errValidation("no recipients: configure apps["+w.app.id+"].webhooks.to or give ?to=",
			FieldError{Field: "to", Message: "required"})
	}
	if p := checkRecipientCount(w.app, len(in.To)); p != nil {
		return p
	}
	now := s.now()
	id := queue.NewID(now)
	msg, err := compose.Build(in, compose.Options{Now: now, MessageIDLocal: id})
	if err != nil {
		return composeProblem(err)
	}
	return s.accept(c, w.app, id, msg, metadata, w.opts)
}

// verifyGrafana checks the HMAC-SHA256 signature Grafana's webhook contact
// point sends when it has an HMAC secret: hex of HMAC(secret, body), or of
// HMAC(secret, timestamp + ":" + body) when a timestamp header is
// configured (grafana/alerting, http/hmac.go). The comparison takes
// constant time; a timestamp must be recent, so a captured request cannot
// be replayed later.
func verifyGrafana(h http.Header, body []byte, conf *config.AppWebhooks, now time.Time) error {
	sig := strings.TrimSpace(h.Get(conf.GrafanaSignatureHeader))
	if sig == "" {
		return errUnauthorized("this app requires Grafana's HMAC signature in " + conf.GrafanaSignatureHeader)
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return errUnauthorized("the signature in " + conf.GrafanaSignatureHeader + " is not hex")
	}
	mac := hmac.New(sha256.New, []byte(conf.GrafanaSecret))
	if th := conf.GrafanaTimestampHeader; th != "" {
		ts := strings.TrimSpace(h.Get(th))
		secs, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return errUnauthorized("the signed timestamp in " + th + " is missing or not Unix seconds")
		}
		if d := now.Sub(time.Unix(secs, 0)); d > grafanaMaxSkew || d < -grafanaMaxSkew {
			return errUnauthorized("the signed timestamp in " + th + " is more than 5 minutes off")
		}
		mac.Write([]byte(ts + ":"))
	}
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return errUnauthorized("the signature in " + conf.GrafanaSignatureHeader + " does not match the body")
	}
	return nil
}
