package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mailgate/mailgate/internal/alertmail"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/templates"
)

// CodeTemplateFailed is a template that could not be rendered for the
// request's data: 422, nothing queued.
const CodeTemplateFailed = "template_failed"

// acceptOptions are what a door adds to a message besides its bytes.
type acceptOptions struct {
	// derivedKey is an idempotency key mailgate derived itself (from a
	// webhook body), used when the client sent no Idempotency-Key, and
	// kept for derivedKeyTTL.
	derivedKey    string
	derivedKeyTTL time.Duration
	// sendAt, when not zero, is when the message is due (send_at).
	sendAt time.Time
}

func newTemplateSet(cfg *config.Config, now func() time.Time) (*templates.Set, error) {
	configured := make([]templates.Source, len(cfg.Templates))
	for i := range cfg.Templates {
		configured[i] = cfg.Templates[i].Source()
	}
	return templates.NewSet(alertmail.Builtin(), configured, now)
}

// submissionOptions reads send_at: an RFC 3339 time at most
// delivery.max_schedule_ahead ahead. A time already past means now (the
// client's clock may be a little behind).
func (s *Server) submissionOptions(sendAt string) (acceptOptions, error) {
	if sendAt == "" {
		return acceptOptions{}, nil
	}
	t, err := time.Parse(time.RFC3339, sendAt)
	if err != nil {
		return acceptOptions{}, errValidation("send_at must be an RFC 3339 time such as 2026-12-01T18:00:00Z",
			FieldError{Field: "send_at", Message: fmt.Sprintf("%q is not an RFC 3339 time", sendAt)})
	}
	now := s.now()
	if ahead := s.cfg.Delivery.MaxScheduleAhead; t.After(now.Add(ahead)) {
		return acceptOptions{}, errValidation(fmt.Sprintf("send_at may be at most %s ahead", ahead),
			FieldError{Field: "send_at", Message: fmt.Sprintf("%s is more than %s from now", t.UTC().Format(time.RFC3339), ahead)})
	}
	if !t.After(now) {
		return acceptOptions{}, nil
	}
	return acceptOptions{sendAt: t}, nil
}

// applyTemplate renders a submission's template and data into its
// subject, text and html.
func (s *Server) applyTemplate(sub *submission) error {
	if sub.template == "" {
		if len(sub.data) > 0 && string(sub.data) != "null" {
			return errValidation("data is only used with template", FieldError{Field: "data", Message: "given without template"})
		}
		return nil
	}
	if sub.in.Subject != "" || sub.in.Text != "" || sub.in.HTML != "" {
		return errValidation("give either template (with data) or subject, text and html",
			FieldError{Field: "template", Message: "given together with subject, text or html"})
	}
	t := s.templates.Get(sub.template)
	if t == nil {
		return errValidation("no template is named "+sub.template,
			FieldError{Field: "template", Message: "unknown template " + sub.template})
	}
	var data any
	if len(sub.data) > 0 {
		if err := json.Unmarshal(sub.data, &data); err != nil {
			return errInvalidBody("data is not valid JSON", FieldError{Field: "data", Message: err.Error()})
		}
	}
	r, err := t.Render(data)
	if err != nil {
		return templateProblem(err)
	}
	sub.in.Subject, sub.in.Text, sub.in.HTML = r.Subject, r.Text, r.HTML
	return nil
}

// templateProblem is the 422 for a template that failed on this data,
// with the template's own message.
func templateProblem(err error) error {
	var ee *templates.ExecError
	if !errors.As(err, &ee) {
		return err
	}
	return problem(http.StatusUnprocessableEntity, CodeTemplateFailed, "Template failed", ee.Error(),
		FieldError{Field: "template", Message: ee.Error()})
}
