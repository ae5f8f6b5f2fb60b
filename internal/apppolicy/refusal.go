package apppolicy

import (
	"fmt"
	"strings"
)

// Code says which rule refused a submission. The strings are the API's
// problem codes (README.md, "Errors").
type Code string

// The refusals a Policy gives. Suggested SMTP replies (RFC 3463) for a
// door that is not HTTP are on each.
const (
	FromNotAllowed      Code = "from_not_allowed"      // HTTP 403; SMTP 550 5.7.1
	RecipientNotAllowed Code = "recipient_not_allowed" // HTTP 403; SMTP 550 5.7.1
	TooManyRecipients   Code = "too_many_recipients"   // HTTP 422; SMTP 452 4.5.3
	MessageTooLarge     Code = "message_too_large"     // HTTP 413; SMTP 552 5.3.4
)

// FieldError names one input that broke the rule.
type FieldError struct {
	Field   string // "from", "headers.Sender", "envelope_from", "to"
	Message string
}

// Refusal is a submission the app's policy does not allow. It is an error
// so that doors can pass it along; compare with errors.As.
type Refusal struct {
	Code   Code
	App    string
	Reason string // for people: what the app may do
	Fields []FieldError
}

func (r *Refusal) Error() string {
	var b strings.Builder
	b.WriteString(string(r.Code) + ": " + r.Reason)
	for _, f := range r.Fields {
		b.WriteString("; " + f.Field + ": " + f.Message)
	}
	return b.String()
}

// CheckFrom refuses addr, a bare address found in field, unless the app
// may send as it. Doors call it for every address that names a sender (the
// header From, Sender, Resent-From, Resent-Sender) and for the envelope
// sender (MAIL FROM).
func (p *Policy) CheckFrom(field, addr string) *Refusal {
	if p.from.Match(addr) {
		return nil
	}
	return &Refusal{Code: FromNotAllowed, App: p.spec.App,
		Reason: fmt.Sprintf("app %s may send as %s", p.spec.App, p.fromText),
		Fields: []FieldError{{Field: field, Message: addr + " is not within the app's From policy"}}}
}

// CheckRecipientCount refuses more than recipients.max_per_message
// recipients. Doors may call it before rendering, with the count the
// request announces, to refuse a huge list cheaply.
func (p *Policy) CheckRecipientCount(n int) *Refusal {
	if n <= p.spec.MaxRecipients {
		return nil
	}
	return &Refusal{Code: TooManyRecipients, App: p.spec.App,
		Reason: fmt.Sprintf("%d recipients; app %s may send to at most %d per message", n, p.spec.App, p.spec.MaxRecipients)}
}

// CheckRecipients refuses the bare addresses outside recipients.allowed,
// naming each of them.
func (p *Policy) CheckRecipients(addrs []string) *Refusal {
	if p.recipients == nil {
		return nil
	}
	var fields []FieldError
	for _, a := range addrs {
		if !p.recipients.Match(a) {
			fields = append(fields, FieldError{Field: "to", Message: a + " is not within the app's recipient policy"})
		}
	}
	if len(fields) == 0 {
		return nil
	}
	return &Refusal{Code: RecipientNotAllowed, App: p.spec.App,
		Reason: fmt.Sprintf("app %s may not send to %d of the recipients", p.spec.App, len(fields)), Fields: fields}
}

// CheckSize refuses a message of more than max_message_bytes.
func (p *Policy) CheckSize(n int64) *Refusal {
	if n <= p.spec.MaxBytes {
		return nil
	}
	return &Refusal{Code: MessageTooLarge, App: p.spec.App,
		Reason: fmt.Sprintf("app %s may send messages of at most %d bytes", p.spec.App, p.spec.MaxBytes)}
}
