// Package routecheck diagnoses one route step by step — connect, STARTTLS,
// token, AUTH, and optionally one test message — and says, when a step
// fails, what to change in Entra ID, Exchange Online or the configuration.
// It is the first thing an administrator runs, so every failure names its
// fix rather than only the server's words.
package routecheck

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/delivery"
	"github.com/mailgate/mailgate/internal/oauth"
	"github.com/mailgate/mailgate/internal/smtpreply"
)

// Run checks route r and writes a report to out. It returns true when every
// step passed.
func Run(ctx context.Context, cfg *config.Config, r *config.Route, sendTo string, out io.Writer) bool {
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
	mailbox := checkMailbox(r)
	conn, err := dialer.Dial(ctx, mailbox, func(s delivery.Step) {
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

	from := mailbox
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
		fail(out, "rcpt", rr.Reply.String(), smtpreply.Classify(rr.Reply).Hint)
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

// checkMailbox is the mailbox to authenticate as: the route's user name, or
// for "{from}" routes the first listed mailbox.
func checkMailbox(r *config.Route) string {
	if r.Auth.Username == config.FromMailbox {
		if len(r.Mailboxes) > 0 {
			return r.Mailboxes[0]
		}
		return ""
	}
	return r.Auth.Username
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
	if se.Reply != nil {
		fail(out, se.Stage, se.Reply.String(), smtpreply.Classify(*se.Reply).Hint)
		return
	}
	fail(out, se.Stage, se.Err.Error(), networkHint(r, se))
}

// networkHint explains the failures that have no SMTP reply.
func networkHint(r *config.Route, se *delivery.StepError) string {
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var dnsErr *net.DNSError
	switch {
	case errors.As(se.Err, &unknownAuthority):
		return "the server's certificate is not signed by a trusted CA: add the CA to tls.ca_file"
	case errors.As(se.Err, &hostname):
		return "the certificate does not name " + r.Host + ": set tls.server_name to the name it has, or fix host"
	case errors.As(se.Err, &dnsErr):
		return "the host name does not resolve: check host (for connectors: " + config.MXHost(firstDomain(r)) + ")"
	case errors.Is(se.Err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing listens on %s:%d: check host and port", r.Host, r.Port)
	case isTimeout(se.Err):
		return fmt.Sprintf("no answer from %s:%d: outbound port %d may be blocked by a firewall or the cloud provider "+
			"(many block port 25)", r.Host, r.Port, r.Port)
	case strings.Contains(se.Err.Error(), "STARTTLS"):
		return "the route requires TLS; a server that does not offer STARTTLS is not Exchange Online"
	}
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
