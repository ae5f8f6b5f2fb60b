package smtpd

import (
	"context"
	"time"
)

// Door is what the SMTP door asks of the rest of mailgate: the apps' policy
// and the accept step that the HTTP API uses too, so both doors apply one
// policy with one piece of code. Its errors are refusals as *smtp.SMTPError
// (550 5.7.1 with the policy's reason, 552 5.3.4, 554 5.6.0 ...); any other
// error means the queue could not take the message (451 4.3.0).
type Door interface {
	// App returns the limits of app id, or false when no such app exists.
	App(id string) (App, bool)
	// CheckSender refuses an envelope sender (MAIL FROM) outside the app's
	// From policy.
	CheckSender(app, addr string) error
	// CheckRecipient refuses a recipient outside the app's recipient
	// policy, or one that would make n recipients, over the app's limit.
	CheckRecipient(app, addr string, n int) error
	// CheckSize refuses a message of n bytes, over the app's limit.
	CheckSize(app string, n int64) error
	// Accept renders and checks a whole message (its From, Sender and other
	// header rules, size and recipients) and stores it atomically; it
	// returns the id the status API knows.
	Accept(ctx context.Context, s Submission) (id string, err error)
}

// App is what the SMTP conversation needs to know of an app before DATA.
type App struct {
	ID       string
	Disabled bool
	MaxBytes int64
}

// Submission is one message received over SMTP.
type Submission struct {
	App          string
	ID           string // chosen by the door, already named in the Received header
	EnvelopeFrom string
	Recipients   []string
	Raw          []byte // as received
	// Received is mailgate's Received header, to be put on top of the
	// rendered message (rendering removes the trace fields a client sent).
	Received []byte
	Now      time.Time
}
