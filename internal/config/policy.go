package config

import (
	"fmt"

	"github.com/mailgate/mailgate/internal/addrpolicy"
	"github.com/mailgate/mailgate/internal/apppolicy"
)

// App returns the app with the given id, or nil.
func (c *Config) App(id string) *App {
	for i := range c.Apps {
		if c.Apps[i].ID == id {
			return &c.Apps[i]
		}
	}
	return nil
}

// Route returns the route with the given name, or nil.
func (c *Config) Route(name string) *Route {
	for i := range c.Routes {
		if c.Routes[i].Name == name {
			return &c.Routes[i]
		}
	}
	return nil
}

// SenderSet returns every From address r can ever send as, as Exchange
// Online decides it (docs/exchange-online.md, "Three ways in"):
//
//   - smtp-auth: the authenticated mailbox plus what it holds Send As on
//     (send_as); anything else gets 550 5.7.60. With username "{from}", each
//     message authenticates as its own From, so exactly the mailboxes list.
//   - connector: any address of an accepted domain, *@d for each of
//     accepted_domains; anything else gets 550 5.7.64.
//   - smtp: send_as when it is given; otherwise unrestricted is true and the
//     set is nil, because mailgate knows nothing of that server's rules.
//
// The error reports an entry that is not a valid address or pattern, or an
// unknown route type.
func (r *Route) SenderSet() (senders addrpolicy.Set, unrestricted bool, err error) {
	switch r.Type {
	case RouteSMTPAuth:
		if r.Auth.Username == FromMailbox {
			senders, err = addrpolicy.ParseSet(r.Mailboxes)
			break
		}
		if err := addrpolicy.ValidateAddress(r.Auth.Username); err != nil {
			return nil, false, fmt.Errorf("route %s: auth.username: %w", r.Name, err)
		}
		senders, err = addrpolicy.ParseSet(append([]string{r.Auth.Username}, r.SendAs...))
	case RouteConnector:
		domains := make([]string, len(r.AcceptedDomains))
		for i, d := range r.AcceptedDomains {
			domains[i] = "*@" + d
		}
		senders, err = addrpolicy.ParseSet(domains)
	case RouteSMTP:
		if len(r.SendAs) == 0 {
			return nil, true, nil
		}
		senders, err = addrpolicy.ParseSet(r.SendAs)
	default:
		return nil, false, fmt.Errorf("route %s: unknown type %q", r.Name, r.Type)
	}
	if err != nil {
		return nil, false, fmt.Errorf("route %s: %w", r.Name, err)
	}
	return senders, false, nil
}

// identity describes who r sends as, for messages.
func (r *Route) identity() string {
	switch {
	case r.Type == RouteSMTPAuth && r.Auth.Username == FromMailbox:
		return "smtp-auth as each From mailbox"
	case r.Type == RouteSMTPAuth:
		return "smtp-auth as " + r.Auth.Username
	}
	return r.Type
}

// refusal says what Exchange Online (or the server) does with a From outside
// r's SenderSet, and what to change.
func (r *Route) refusal() string {
	switch {
	case r.Type == RouteSMTPAuth && r.Auth.Username == FromMailbox:
		return "mailgate authenticates only as the mailboxes listed (add it to mailboxes and grant the app FullAccess on it in Exchange Online)"
	case r.Type == RouteSMTPAuth:
		return "Exchange Online would refuse it with 550 5.7.60 (add a Send As grant and list it under send_as)"
	case r.Type == RouteConnector:
		return "Exchange Online would refuse it with 550 5.7.64 TenantAttribution (it must be an accepted domain of the tenant, listed under accepted_domains)"
	}
	return "list it under the route's send_as, or leave send_as empty to allow any sender"
}

// PolicySpec is what the app's configuration says of its sending policy,
// for apppolicy.Compile.
func (a *App) PolicySpec() apppolicy.Spec {
	return apppolicy.Spec{App: a.ID, Route: a.Route, Disabled: a.Disabled,
		DefaultFrom: a.From.Default, FromAllowed: a.From.Allowed, Recipients: a.Recipients.Allowed,
		MaxRecipients: a.Recipients.MaxPerMessage, MaxBytes: a.MaxMessageBytes, PerMinute: a.RateLimit.PerMinute,
		Queue: apppolicy.QueueLimits{AppMessages: a.Queue.MaxMessages, AppBytes: a.Queue.MaxBytes}}
}

// Policies compiles the policy of every app, by id. Validate has reported
// any error already; doors call this once at startup.
func (c *Config) Policies() (map[string]*apppolicy.Policy, error) {
	out := make(map[string]*apppolicy.Policy, len(c.Apps))
	for i := range c.Apps {
		spec := c.Apps[i].PolicySpec()
		if r := c.Route(c.Apps[i].Route); r != nil {
			spec.Queue.RouteMessages, spec.Queue.RouteBytes = r.Queue.MaxMessages, r.Queue.MaxBytes
		}
		p, err := apppolicy.Compile(spec)
		if err != nil {
			return nil, fmt.Errorf("apps[%s]: %w", c.Apps[i].ID, err)
		}
		out[c.Apps[i].ID] = p
	}
	return out, nil
}

// policy checks that everything app a may send as (its compiled from.allowed
// patterns and from.default address) is within what route r can send as. A
// route whose own addresses are invalid, already reported, is skipped.
func (v *validator) policy(key string, a *App, pol *apppolicy.Policy, r *Route) {
	var allowed addrpolicy.Set
	if len(a.From.Allowed) > 0 {
		allowed = pol.From() // in the order of from.allowed
	}
	defaultAddr := pol.DefaultAddress()
	senders, unrestricted, err := r.SenderSet()
	if err != nil || unrestricted {
		return
	}
	outside := func(k, what string) {
		v.add(k, "%q is outside what route %q (%s) can send as: %s; %s",
			what, r.Name, r.identity(), senders, r.refusal())
	}
	for i, p := range allowed {
		if !senders.Covers(p) {
			outside(fmt.Sprintf("%s.from.allowed[%d]", key, i), a.From.Allowed[i])
		}
	}
	if defaultAddr != "" && !senders.Match(defaultAddr) {
		outside(key+".from.default", defaultAddr)
	}
}
