package api

import (
	"fmt"
	"strings"

	"github.com/mailgate/mailgate/internal/addrpolicy"
	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/config"
)

// appPolicy is an app's configuration compiled once at startup, so no
// pattern is parsed per request.
type appPolicy struct {
	id            string
	route         string
	disabled      bool
	defaultFrom   string         // as configured, "" when none
	from          addrpolicy.Set // who the app may send as
	fromText      string         // the same, for error messages
	recipients    addrpolicy.Set // nil: anyone
	maxRecipients int
	maxBytes      int64
	perMinute     int
}

func compilePolicies(cfg *config.Config) (map[string]*appPolicy, error) {
	out := make(map[string]*appPolicy, len(cfg.Apps))
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		p := &appPolicy{id: a.ID, route: a.Route, disabled: a.Disabled, defaultFrom: a.From.Default,
			maxRecipients: a.Recipients.MaxPerMessage, maxBytes: a.MaxMessageBytes, perMinute: a.RateLimit.PerMinute}
		allowed := a.From.Allowed
		if len(allowed) == 0 && a.From.Default != "" {
			// Without an allowed list the app may send only as its default.
			addr, err := compose.ParseAddress(a.From.Default)
			if err != nil {
				return nil, fmt.Errorf("apps[%s].from.default: %w", a.ID, err)
			}
			allowed = []string{addr.Address}
		}
		set, err := addrpolicy.ParseSet(allowed)
		if err != nil {
			return nil, fmt.Errorf("apps[%s].from.allowed: %w", a.ID, err)
		}
		p.from, p.fromText = set, strings.Join(allowed, ", ")
		if len(a.Recipients.Allowed) > 0 {
			if p.recipients, err = addrpolicy.ParseSet(a.Recipients.Allowed); err != nil {
				return nil, fmt.Errorf("apps[%s].recipients.allowed: %w", a.ID, err)
			}
		}
		out[a.ID] = p
	}
	return out, nil
}
