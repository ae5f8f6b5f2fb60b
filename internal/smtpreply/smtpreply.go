// Package smtpreply turns what an SMTP server answered into a decision:
// the message was sent, should be retried, has failed for good, or the
// route (or one sending mailbox) must stop until its configuration or quota
// allows again.
//
// The table follows Exchange Online's documented replies
// (docs/exchange-online.md, "Replies and what a gateway does with them"): a
// configuration error (535 5.7.3, 535 5.7.139, 530 5.7.57, 550 5.7.30,
// 550 5.7.64) or a block (5.2.251–5.2.255, 5.7.501–5.7.503, 5.7.705, 5.7.708,
// 5.7.750, 5.1.8) would fail every message of the route the same way, so the
// route is held instead of burning messages and retries; and Exchange
// throttles a mailbox that keeps producing the same error, so permanent
// per-message failures are never retried. Anything not understood — a
// dropped connection, a timeout — is temporary, as in foxcpp/maddy's
// exterrors.
package smtpreply

import (
	"errors"
	"fmt"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
)

// Reply is one SMTP reply: the basic code, the RFC 3463 enhanced code when
// the server gave one, and the text after it.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

func (r Reply) String() string {
	if r.Enhanced != "" {
		return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
	}
	return fmt.Sprintf("%d %s", r.Code, r.Text)
}

var enhancedRe = regexp.MustCompile(`^([245])\.(\d{1,3})\.(\d{1,3})\b`)

// Parse splits an SMTP reply text (without the basic code) into the
// enhanced code and the rest. Multi-line replies are joined with spaces.
func Parse(code int, msg string) Reply {
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
	r := Reply{Code: code, Text: msg}
	if m := enhancedRe.FindString(msg); m != "" {
		r.Enhanced = m
		r.Text = strings.TrimSpace(msg[len(m):])
	}
	return r
}

// FromError extracts the SMTP reply of err, if it carries one
// (net/textproto.Error, as the go-mail smtp client returns).
func FromError(err error) (Reply, bool) {
	var te *textproto.Error
	if errors.As(err, &te) {
		return Parse(te.Code, te.Msg), true
	}
	return Reply{}, false
}

// Action is what to do after a reply.
type Action int

const (
	// Sent: the server took responsibility for the message.
	Sent Action = iota
	// Retry: temporary; try again after a backoff.
	Retry
	// Fail: permanent for this message (or recipient); never retry.
	Fail
	// HoldRoute: the route's own configuration is wrong or it is blocked;
	// keep every message queued and probe until it works again.
	HoldRoute
	// WaitMailbox: the sending mailbox's quota is used up; its messages
	// wait for the quota window, they are not bounced.
	WaitMailbox
)

func (a Action) String() string {
	return [...]string{"sent", "retry", "fail", "hold-route", "wait-mailbox"}[a]
}

// Verdict is the classification of one reply.
type Verdict struct {
	Action Action
	// Hint explains what an operator must do, when there is something to do.
	Hint string
}

// Classify decides what a reply means. A failure without a reply (a dropped
// connection, a timeout, a TLS error) has nothing to classify here: the
// delivery worker treats it as temporary (internal/delivery, outcome.go), or
// holds the route when it is a TLS configuration error.
func Classify(r Reply) Verdict {
	enh := r.Enhanced
	text := strings.ToLower(r.Text)
	switch {
	case r.Code >= 200 && r.Code < 300:
		return Verdict{Action: Sent}
	case r.Code >= 300 && r.Code < 400:
		// An intermediate reply where a final one was due: the exchange went
		// wrong, and trying again is the safe reading.
		return Verdict{Action: Retry}
	}

	// Blocks and configuration errors first: their codes are 5xx, but no
	// single message is at fault.
	if in(enh, 5, 2, 251, 255) || in(enh, 5, 7, 501, 503) || enh == "5.7.705" || enh == "5.7.708" || enh == "5.7.750" || enh == "5.1.8" {
		return Verdict{Action: HoldRoute, Hint: "Exchange Online has blocked this mailbox, IP or tenant (" + enh +
			"); see the message centre / Defender restricted entities, and remove the block before delivery resumes"}
	}
	switch {
	case enh == "5.7.139":
		return Verdict{Action: HoldRoute, Hint: "SMTP AUTH is disabled for the tenant or this mailbox: enable it with " +
			"`Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false` (and check " +
			"`Get-TransportConfig | fl SmtpClientAuthenticationDisabled` for the tenant)"}
	case enh == "5.7.30":
		return Verdict{Action: HoldRoute, Hint: "basic authentication is refused for SMTP AUTH: switch the route to " +
			"auth.mechanism: xoauth2 with an Entra ID app that has SMTP.SendAsApp"}
	case enh == "5.7.3" && (r.Code == 535 || r.Code == 530):
		return Verdict{Action: HoldRoute, Hint: "authentication was refused: check the user name and credentials; for " +
			"XOAUTH2 the app needs the SMTP.SendAsApp permission, a service principal in Exchange " +
			"(New-ServicePrincipal) and FullAccess on the mailbox (Add-MailboxPermission)"}
	case enh == "5.7.57":
		return Verdict{Action: HoldRoute, Hint: "the server says the client is not authenticated: the route must " +
			"authenticate (auth.mechanism) before sending"}
	case enh == "5.7.64":
		return Verdict{Action: HoldRoute, Hint: "the inbound connector does not recognise this sender (TenantAttribution): " +
			"check the connector's certificate domain or sending IPs, and that the From domain is an accepted domain"}
	case r.Code == 535 || r.Code == 530:
		return Verdict{Action: HoldRoute, Hint: "authentication failed: check the route's credentials"}
	}

	if enh == "5.7.60" || (enh == "5.2.0" && strings.Contains(text, "sendasdenied")) {
		return Verdict{Action: Fail, Hint: "the sending mailbox has no Send As permission for this From address: grant it " +
			"with `Add-RecipientPermission -Identity <from address> -Trustee <mailbox> -AccessRights SendAs` " +
			"and list the address under the route's send_as"}
	}
	if strings.Contains(text, "submissionquotaexceeded") {
		return Verdict{Action: WaitMailbox, Hint: "the mailbox reached Exchange Online's recipient limit " +
			"(10,000 a day, rolling); its messages wait for the window"}
	}

	switch {
	case r.Code >= 400 && r.Code < 500:
		return Verdict{Action: Retry}
	case r.Code >= 500 && r.Code < 600:
		return Verdict{Action: Fail}
	}
	// A code outside 2xx–5xx is a broken exchange: retry.
	return Verdict{Action: Retry}
}

// in reports whether enhanced code enh is class.subject.[lo, hi].
func in(enh string, class, subject, lo, hi int) bool {
	parts := strings.Split(enh, ".")
	if len(parts) != 3 {
		return false
	}
	c, err1 := strconv.Atoi(parts[0])
	s, err2 := strconv.Atoi(parts[1])
	d, err3 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	return c == class && s == subject && d >= lo && d <= hi
}
