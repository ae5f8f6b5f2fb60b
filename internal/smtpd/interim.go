package smtpd

// TEMPORARY: this file stands in for the shared accept step (app policy and
// atomic enqueue) that the HTTP API and the SMTP door are to call alike. It
// is replaced by an adapter over that package when it lands; until then it
// applies the rules POST /v1/messages/raw applies, with the same packages
// (addrpolicy, compose, queue).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/internal/addrpolicy"
	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/queue"
)

// InterimDoor is the temporary Door over the queue.
type InterimDoor struct {
	apps     map[string]*interimApp
	queue    *queue.Queue
	retryFor time.Duration
}

type interimApp struct {
	App
	route       string
	defaultFrom string
	from        addrpolicy.Set
	fromText    string
	recipients  addrpolicy.Set
}

// NewInterimDoor compiles the apps' policies of cfg.
func NewInterimDoor(cfg *config.Config, q *queue.Queue, retryFor time.Duration) (*InterimDoor, error) {
	d := &InterimDoor{apps: map[string]*interimApp{}, queue: q, retryFor: retryFor}
	for _, a := range cfg.Apps {
		allowed := a.From.Allowed
		if len(allowed) == 0 && a.From.Default != "" {
			addr, err := compose.ParseAddress(a.From.Default)
			if err != nil {
				return nil, err
			}
			allowed = []string{addr.Address}
		}
		from, err := addrpolicy.ParseSet(allowed)
		if err != nil {
			return nil, err
		}
		p := &interimApp{App: App{ID: a.ID, Disabled: a.Disabled, MaxRecipients: a.Recipients.MaxPerMessage, MaxBytes: a.MaxMessageBytes},
			route: a.Route, defaultFrom: a.From.Default, from: from, fromText: strings.Join(allowed, ", ")}
		if len(a.Recipients.Allowed) > 0 {
			if p.recipients, err = addrpolicy.ParseSet(a.Recipients.Allowed); err != nil {
				return nil, err
			}
		}
		d.apps[a.ID] = p
	}
	return d, nil
}

func (d *InterimDoor) App(id string) (App, bool) {
	a, ok := d.apps[id]
	if !ok {
		return App{}, false
	}
	return a.App, true
}

func (d *InterimDoor) CheckSender(app, addr string) error {
	a := d.apps[app]
	if !a.from.Match(addr) {
		return policyRefusal("Sender <%s> not allowed: app %s may send as %s", addr, app, a.fromText)
	}
	return nil
}

func (d *InterimDoor) CheckRecipient(app, addr string) error {
	a := d.apps[app]
	if a.recipients != nil && !a.recipients.Match(addr) {
		return policyRefusal("Recipient <%s> not allowed for app %s", addr, app)
	}
	return nil
}

func (d *InterimDoor) Accept(ctx context.Context, s Submission) (string, error) {
	a := d.apps[s.App]
	msg, err := compose.ParseRaw(s.Raw, compose.Options{Now: s.Now, MessageIDLocal: s.ID,
		EnvelopeTo: s.Recipients, DefaultFrom: a.defaultFrom})
	if err != nil {
		var ce *compose.Error
		if errors.As(err, &ce) {
			return "", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: " + ce.Error()}
		}
		return "", err
	}
	if !a.from.Match(msg.From.Address) {
		return "", policyRefusal("From %s not allowed: app %s may send as %s", msg.From.Address, s.App, a.fromText)
	}
	if int64(len(msg.Bytes)) > a.MaxBytes {
		return "", tooBig(a.App)
	}
	id, _, err := d.queue.EnqueueRetrying(ctx, queue.Message{
		ID: s.ID, App: s.App, Route: a.route,
		From: msg.From.Address, HeaderFrom: msg.From.String(),
		Recipients: msg.Recipients, To: msg.To, Cc: msg.Cc,
		Subject: msg.Subject, MessageID: msg.MessageID, Body: msg.Bytes,
	}, d.retryFor)
	if err != nil {
		return "", fmt.Errorf("enqueue %s: %w", s.ID, err)
	}
	return id, nil
}
