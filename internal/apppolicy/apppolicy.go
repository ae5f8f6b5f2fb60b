// Package apppolicy is an app's sending policy, compiled once from its
// configuration, and the one place that answers every question a door asks
// about a submission: may this app send as this From (or envelope sender),
// to these recipients, this many of them, this many bytes?
//
// Every door (the HTTP API, the SMTP door, the sendmail shim, webhooks)
// holds the same *Policy and gets the same answers, as typed refusals: a
// Code the door maps to its own protocol (problem+json 403/413/422 for HTTP;
// 550 5.7.1 or 552 5.3.4 for SMTP), the offending field and a reason for
// people. config validation compiles the same way, so a configuration that
// passes `mailgate config check` compiles at startup.
//
// The rules that live only here:
//
//   - Without from.allowed, an app may send only as its from.default.
//   - from.default must be within from.allowed when both are given.
//   - Without recipients.allowed, an app may send to anyone.
//
// Addresses and patterns are parsed by package addrpolicy. This package
// must not import config (config validation uses it) nor compose (that
// would pull go-mail into config).
package apppolicy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mailgate/mailgate/internal/addrpolicy"
)

// Spec is what the configuration says about one app.
type Spec struct {
	App, Route string
	Disabled   bool
	// DefaultFrom is "Name <a@b>" or "a@b", or "" for none.
	DefaultFrom string
	// FromAllowed are address patterns; empty means only DefaultFrom.
	FromAllowed []string
	// Recipients are address patterns; empty means anyone.
	Recipients    []string
	MaxRecipients int
	MaxBytes      int64
	PerMinute     int
	// Queue bounds what may wait in the queue; the accept step hands it to
	// the enqueue (package intake).
	Queue QueueLimits
}

// QueueLimits bound what may wait in the queue for the app's route, all apps
// together, and for the app's share of it; zero means no bound. It has the
// fields of queue.Limits, so one converts to the other.
type QueueLimits struct {
	RouteMessages, RouteBytes int64
	AppMessages, AppBytes     int64
}

// Policy is a compiled Spec. It is immutable and safe for concurrent use.
type Policy struct {
	spec        Spec
	defaultAddr string         // bare from.default, "" when none
	from        addrpolicy.Set // who the app may send as
	fromText    string         // the same, for reasons
	recipients  addrpolicy.Set // nil: anyone
}

// SpecError is one problem of a Spec; Key names it relative to the app, as
// the configuration file spells it ("from.default", "from.allowed[1]").
type SpecError struct {
	Key string
	Err error
}

func (e *SpecError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *SpecError) Unwrap() error { return e.Err }

// Compile checks s and compiles it. The error joins one *SpecError per
// problem (errors.As finds the first; config check lists all of them with
// SpecErrors).
func Compile(s Spec) (*Policy, error) {
	var errs []error
	bad := func(key string, err error) { errs = append(errs, &SpecError{Key: key, Err: err}) }
	p := &Policy{spec: s}
	if s.DefaultFrom != "" {
		a, err := addrpolicy.ParseMailbox(s.DefaultFrom)
		if err != nil {
			bad("from.default", fmt.Errorf("%q is not a single address such as alerts@contoso.com or \"Alerts <alerts@contoso.com>\": %w", s.DefaultFrom, err))
		} else {
			p.defaultAddr = a.Address
		}
	}
	allowedOK := true
	for i, str := range s.FromAllowed {
		pat, err := addrpolicy.Parse(str)
		if err != nil {
			bad(fmt.Sprintf("from.allowed[%d]", i), err)
			allowedOK = false
			continue
		}
		p.from = append(p.from, pat)
	}
	switch {
	case s.DefaultFrom == "" && len(s.FromAllowed) == 0:
		bad("from", errors.New("give from.default, from.allowed or both: an app must be allowed some From address"))
	case len(s.FromAllowed) == 0 && p.defaultAddr != "":
		// Without an allowed list the app may send only as its default.
		pat, err := addrpolicy.Parse(p.defaultAddr)
		if err != nil {
			bad("from.default", err)
		}
		p.from = addrpolicy.Set{pat}
		p.fromText = p.defaultAddr
	case allowedOK && p.defaultAddr != "" && !p.from.Match(p.defaultAddr):
		bad("from.default", fmt.Errorf("%q is not matched by any pattern of from.allowed", p.defaultAddr))
	}
	if p.fromText == "" {
		p.fromText = strings.Join(s.FromAllowed, ", ")
	}
	for i, str := range s.Recipients {
		pat, err := addrpolicy.Parse(str)
		if err != nil {
			bad(fmt.Sprintf("recipients.allowed[%d]", i), err)
			continue
		}
		p.recipients = append(p.recipients, pat)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// SpecErrors returns every *SpecError joined in err, in order.
func SpecErrors(err error) []*SpecError {
	var out []*SpecError
	var walk func(error)
	walk = func(err error) {
		var se *SpecError
		if errors.As(err, &se) && err == error(se) {
			out = append(out, se)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

// App is the app's id.
func (p *Policy) App() string { return p.spec.App }

// Route is the name of the route the app's messages go out by.
func (p *Policy) Route() string { return p.spec.Route }

// Disabled reports whether the app is refused altogether.
func (p *Policy) Disabled() bool { return p.spec.Disabled }

// DefaultFrom is from.default as configured ("Alerts <a@b>"), "" for none.
func (p *Policy) DefaultFrom() string { return p.spec.DefaultFrom }

// DefaultAddress is the bare address of from.default, "" for none.
func (p *Policy) DefaultAddress() string { return p.defaultAddr }

// From is who the app may send as: from.allowed (in its order), or the
// default alone when from.allowed is empty.
func (p *Policy) From() addrpolicy.Set { return p.from }

// MaxRecipients is recipients.max_per_message.
func (p *Policy) MaxRecipients() int { return p.spec.MaxRecipients }

// MaxBytes is max_message_bytes.
func (p *Policy) MaxBytes() int64 { return p.spec.MaxBytes }

// PerMinute is rate_limit.per_minute; 0 means no limit.
func (p *Policy) PerMinute() int { return p.spec.PerMinute }

// QueueLimits are the app's and its route's queue limits.
func (p *Policy) QueueLimits() QueueLimits { return p.spec.Queue }
