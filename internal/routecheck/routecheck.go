// Package routecheck diagnoses one route step by step — connect, STARTTLS,
// token, AUTH, and optionally one test message — and says, when a step
// fails, what to change in Entra ID, Exchange Online or the configuration.
// It is the first thing an administrator runs, so every failure names its
// fix rather than only the server's words.
package routecheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/delivery"
	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/internal/mailbox"
	"github.com/mailgate/mailgate/internal/oauth"
)

// DefaultSlotWait is how long a check waits for a connection slot when the
// workers hold them all.
const DefaultSlotWait = 30 * time.Second

// Options are what a check shares with running workers.
type Options struct {
	// Limiter, when set, is the per-mailbox limiter the workers use (the
	// same Redis and key prefix): the check's connection takes one of the
	// mailbox's slots like a worker's does, so it cannot be the connection
	// Exchange refuses with 432 4.3.2, nor push a worker into it.
	Limiter *limits.Limiter
	// SlotWait bounds the wait for a slot (DefaultSlotWait when 0).
	SlotWait time.Duration
}

// Run checks route r and writes a report to out. It returns true when every
// step passed.
func Run(ctx context.Context, cfg *config.Config, r *config.Route, sendTo string, out io.Writer, o Options) bool {
	fmt.Fprintf(out, "route %s (%s) → %s:%d, tls %s", r.Name, r.Type, r.Host, r.Port, r.TLS.Mode)
	if r.Auth.Mechanism != "" {
		fmt.Fprintf(out, ", auth %s as %s", r.Auth.Mechanism, r.Auth.Username)
	}
	fmt.Fprintln(out)
	if r.TLS.InsecureSkipVerify {
		fmt.Fprintln(out, "  ! tls.insecure_skip_verify is on: the server's certificate is NOT verified")
	}

	if r.Auth.Mechanism == config.MechXOAUTH2 && !checkToken(ctx, r, out) {
		return false
	}
	auth, err := delivery.AuthenticatorFor(r)
	if err != nil {
		fail(out, "auth", err.Error(), "")
		return false
	}
	d := cfg.Delivery
	dialer, err := delivery.NewDialer(r, delivery.DialerOptions{HelloName: d.HelloName,
		ConnectTimeout: d.ConnectTimeout, CommandTimeout: d.CommandTimeout, Auth: auth})
	if err != nil {
		fail(out, "tls", err.Error(), "fix the file named, or remove the key")
		return false
	}
	mbox := mailbox.Probe(r)
	if o.SlotWait <= 0 {
		o.SlotWait = DefaultSlotWait
	}
	release, err := delivery.HoldSlot(ctx, o.Limiter, r, mbox, o.SlotWait, func(most int) {
		fmt.Fprintf(out, "  … %-8s all %d connections of the mailbox are in use by running workers; waiting up to %s for one\n",
			"slot", most, o.SlotWait)
	})
	if err != nil {
		var busy *delivery.SlotsBusyError
		if errors.As(err, &busy) {
			fail(out, "slot", err.Error(), "run the check again when the queue is quieter, or stop the workers of this route for a moment")
		} else {
			fail(out, "slot", "cannot take a connection slot shared with the workers: "+err.Error(), "check redis.url")
		}
		return false
	}
	defer release()
	conn, err := dialer.Dial(ctx, mbox, func(s delivery.Step) {
		fmt.Fprintf(out, "  ✓ %-8s %s\n", s.Stage, s.Detail)
	})
	if err != nil {
		reportStepError(out, r, err)
		return false
	}
	defer conn.Close()
	if sendTo == "" {
		fmt.Fprintln(out, "ok: the route can deliver (add --send-test ADDRESS to send a test message)")
		return true
	}

	from := mbox
	if from == "" {
		from = "mailgate-check@" + firstDomain(r)
	}
	now := time.Now()
	msg, err := compose.Build(compose.Input{
		From: from, To: []string{sendTo},
		Subject: "mailgate route check: " + r.Name,
		Text: fmt.Sprintf("This message was sent by `mailgate check --route %s --send-test` at %s.\r\n",
			r.Name, now.UTC().Format(time.RFC1123Z)),
	}, compose.Options{Now: now, MessageIDLocal: fmt.Sprintf("check.%d", now.UnixNano())})
	if err != nil {
		fail(out, "message", err.Error(), "give a valid --send-test address")
		return false
	}
	res, err := conn.Send(msg.From.Address, msg.Recipients, msg.Bytes)
	if err != nil {
		reportStepError(out, r, err)
		return false
	}
	if len(res.Refused) > 0 {
		rr := res.Refused[0]
		fail(out, "rcpt", rr.Reply.String(), delivery.Diagnose(r, &delivery.StepError{Stage: delivery.StageRcpt, Reply: &rr.Reply}).Hint)
		return false
	}
	fmt.Fprintf(out, "  ✓ %-8s %s\n", "send", res.Reply.String())
	fmt.Fprintf(out, "ok: test message sent from %s to %s (Message-ID <%s>)\n", from, sendTo, msg.MessageID)
	return true
}

// checkToken fetches an app-only token on its own, so a problem in Entra ID
// (secret, certificate, tenant, consent) is told apart from one in Exchange.
func checkToken(ctx context.Context, r *config.Route, out io.Writer) bool {
	ts, err := oauth.NewTokenSource(&r.Auth.OAuth, oauth.Options{CAFile: r.TLS.CAFile})
	if err != nil {
		fail(out, "token", err.Error(), "")
		return false
	}
	_, expires, err := ts.Token(ctx)
	if err != nil {
		// oauth errors carry Entra's code and what to change; never the secret.
		fail(out, "token", err.Error(), "")
		return false
	}
	fmt.Fprintf(out, "  ✓ %-8s app-only token from %s for client %s, valid until %s\n", "token",
		ts.Authority(), r.Auth.OAuth.ClientID, expires.UTC().Format(time.RFC3339))
	return true
}

func firstDomain(r *config.Route) string {
	if len(r.AcceptedDomains) > 0 {
		return r.AcceptedDomains[0]
	}
	return "localhost"
}

func fail(out io.Writer, stage, what, hint string) {
	fmt.Fprintf(out, "  ✗ %-8s %s\n", stage, what)
	if hint != "" {
		fmt.Fprintf(out, "    fix: %s\n", hint)
	}
}

func reportStepError(out io.Writer, r *config.Route, err error) {
	var se *delivery.StepError
	if !errors.As(err, &se) {
		fail(out, "?", err.Error(), "")
		return
	}
	what := se.Err.Error()
	if se.Reply != nil {
		what = se.Reply.String()
	}
	fail(out, se.Stage, what, delivery.Diagnose(r, se).Hint)
}
