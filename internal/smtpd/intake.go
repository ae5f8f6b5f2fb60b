package smtpd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/internal/apppolicy"
	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/intake"
)

// IntakeDoor is the Door every process uses: the apps' compiled policies
// (package apppolicy) and the accept step the HTTP API shares (package
// intake). It only translates their answers into SMTP replies; it decides
// nothing itself.
type IntakeDoor struct {
	policies map[string]*apppolicy.Policy
	intake   *intake.Intake
}

// NewIntakeDoor returns the Door over policies (config.Config.Policies) and in.
func NewIntakeDoor(policies map[string]*apppolicy.Policy, in *intake.Intake) *IntakeDoor {
	return &IntakeDoor{policies: policies, intake: in}
}

// App implements Door.
func (d *IntakeDoor) App(id string) (App, bool) {
	p := d.policies[id]
	if p == nil {
		return App{}, false
	}
	return App{ID: id, Disabled: p.Disabled(), MaxBytes: p.MaxBytes()}, true
}

// CheckSender implements Door: MAIL FROM must be within the From policy,
// like every sender header. The null reverse-path (MAIL FROM:<>) is no
// address the app may send as.
func (d *IntakeDoor) CheckSender(app, addr string) error {
	if r := d.policies[app].CheckFrom("envelope_from", addr); r != nil {
		return refusalReply(r)
	}
	return nil
}

// CheckRecipient implements Door. A recipient over the limit gets 452
// 4.5.3, as RFC 5321 section 4.5.3.1.10 asks: the client may send the
// message to the others and to the rest in another transaction.
func (d *IntakeDoor) CheckRecipient(app, addr string, n int) error {
	p := d.policies[app]
	if r := p.CheckRecipientCount(n); r != nil {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients: " + oneLine(r.Reason)}
	}
	if r := p.CheckRecipients([]string{addr}); r != nil {
		return refusalReply(r)
	}
	return nil
}

// CheckSize implements Door.
func (d *IntakeDoor) CheckSize(app string, n int64) error {
	if r := d.policies[app].CheckSize(n); r != nil {
		return refusalReply(r)
	}
	return nil
}

// Accept implements Door: it renders the message as POST /v1/messages/raw
// does, with the envelope's recipients, and hands it to the intake.
func (d *IntakeDoor) Accept(ctx context.Context, s Submission) (string, error) {
	p := d.policies[s.App]
	msg, err := compose.ParseRaw(s.Raw, compose.Options{Now: s.Now, MessageIDLocal: s.ID,
		EnvelopeTo: s.Recipients, DefaultFrom: p.DefaultFrom()})
	if err != nil {
		var ce *compose.Error
		if errors.As(err, &ce) {
			// RFC 3463 5.6.0: something is wrong with the content.
			return "", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: " + oneLine(ce.Error())}
		}
		return "", err
	}
	msg.Bytes = append(append(make([]byte, 0, len(s.Received)+len(msg.Bytes)), s.Received...), msg.Bytes...)
	res, err := d.intake.Accept(ctx, p, intake.Submission{ID: s.ID, Message: msg, EnvelopeFrom: s.EnvelopeFrom,
		IdempotencyKey: retryKey(s, msg.OwnMessageID)})
	var r *apppolicy.Refusal
	if errors.As(err, &r) {
		return "", refusalReply(r)
	}
	var full *intake.FullError
	if errors.As(err, &full) {
		return "", fullReply(full)
	}
	if err != nil {
		return "", err // a *intake.QueueError: 451 4.3.0
	}
	return res.ID, nil
}

// fullReply is the reply when the route's queue, or the app's share of it,
// holds as much as it may: RFC 3463 4.3.1, mail system full, so the client
// keeps the message and tries again later.
func fullReply(f *intake.FullError) *smtp.SMTPError {
	what := "the route's queue is full"
	if f.App {
		what = "this app's share of the route's queue is full"
	}
	return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1},
		Message: "Insufficient system storage: " + what + "; nothing was stored, try again later"}
}

// refusalReply is the SMTP reply of a policy refusal (RFC 3463 codes),
// with the policy's reason and the offending field, so a device log says
// what to fix.
func refusalReply(r *apppolicy.Refusal) *smtp.SMTPError {
	text := r.Reason
	for _, f := range r.Fields {
		text = fmt.Sprintf("%s: %s; %s", fieldName(f.Field), f.Message, text)
	}
	switch r.Code {
	case apppolicy.MessageTooLarge:
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too big: " + oneLine(text)}
	case apppolicy.TooManyRecipients:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 3}, Message: "Too many recipients: " + oneLine(text)}
	}
	return policyRefusal("%s", oneLine(text))
}

// fieldName names a refused field as an SMTP client knows it.
func fieldName(f string) string {
	switch f {
	case "envelope_from":
		return "MAIL FROM"
	case "from":
		return "From"
	case "to":
		return "RCPT TO"
	}
	return strings.TrimPrefix(f, "headers.")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// retryKey is the idempotency key of a message that names itself: one with
// a Message-ID of its own. SMTP has no Idempotency-Key; a client that lost
// the 250 (the connection broke after the end of data) keeps the message
// and sends it again later, byte for byte (RFC 5321 section 4.5.4.1: a
// reply not received is a failure to be retried). The key is a digest of
// the envelope and the bytes as received, so only that same message, from
// the same app, within queue.IdempotencyTTL, is recognised: it is answered
// with the first one's id and not queued twice. A message without a
// Message-ID gets no key: a device that sends the same alert twice, bytes
// and all, means it twice.
func retryKey(s Submission, ownMessageID bool) string {
	if !ownMessageID {
		return ""
	}
	h := sha256.New()
	h.Write([]byte(s.EnvelopeFrom))
	for _, r := range s.Recipients {
		h.Write([]byte{0})
		h.Write([]byte(r))
	}
	h.Write([]byte{0, 0})
	h.Write(s.Raw)
	return "smtp-retry:" + hex.EncodeToString(h.Sum(nil))
}
