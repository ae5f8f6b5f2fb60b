// Package mailbox answers one question for every part of mailgate that
// talks to Exchange Online: which mailbox a route's messages are sent as.
//
// Exchange keeps its submission limits (3 connections, 30 messages a minute,
// 10,000 recipients a day) per mailbox, and a refusal of AUTH concerns one
// mailbox; the workers, the route probe, the route check and the usage
// report must therefore agree on the mailbox, or one of them spends a budget
// the others do not see. An SMTP AUTH route authenticates as auth.username;
// a route whose auth.username is "{from}" authenticates as each message's
// envelope sender (the route's mailboxes list names them in advance); a
// route without AUTH (a connector, a plain SMTP relay) has no mailbox, and
// its limits apply to the route as a whole, under the name RouteWide.
package mailbox

import "github.com/mailgate/mailgate/internal/config"

// RouteWide is the limits name of a route without AUTH.
const RouteWide = "*"

// Of is the mailbox a message with envelope sender from authenticates as on
// r: "" when r has no AUTH.
func Of(r *config.Route, from string) string {
	switch {
	case r.Auth.Mechanism == "":
		return ""
	case r.Auth.Username == config.FromMailbox:
		return from
	default:
		return r.Auth.Username
	}
}

// Fixed reports whether every message of r is sent as the same mailbox (or
// none), so a connection slot can be taken before a message is at hand.
func Fixed(r *config.Route) bool {
	return r.Auth.Mechanism == "" || r.Auth.Username != config.FromMailbox
}

// Probe is the mailbox to authenticate as when no message is at hand (a
// held route's probe, the route check): the fixed mailbox, or for a
// "{from}" route the first of its mailboxes ("" when it lists none).
func Probe(r *config.Route) string {
	if r.Auth.Mechanism != "" && r.Auth.Username == config.FromMailbox {
		if len(r.Mailboxes) > 0 {
			return r.Mailboxes[0]
		}
		return ""
	}
	return Of(r, "")
}

// Limits is the name Exchange's per-mailbox limits of mailbox are kept
// under on r: the mailbox, or RouteWide when r has no AUTH.
func Limits(r *config.Route, mailbox string) string {
	if r.Auth.Mechanism == "" || mailbox == "" {
		return RouteWide
	}
	return mailbox
}

// Known are the limits names of r known in advance, for the usage report:
// RouteWide, the fixed mailbox, or a "{from}" route's listed mailboxes.
func Known(r *config.Route) []string {
	switch {
	case r.Auth.Mechanism == "":
		return []string{RouteWide}
	case r.Auth.Username == config.FromMailbox:
		return r.Mailboxes
	default:
		return []string{r.Auth.Username}
	}
}
