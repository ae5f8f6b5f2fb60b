package api

import (
	"github.com/mailgate/mailgate/internal/apppolicy"
	"github.com/mailgate/mailgate/internal/config"
)

// appPolicy is an app's policy as compiled once by apppolicy, which answers
// every policy question. The fields repeat a few of its values for the
// handlers' brevity; they are copies, never decisions.
type appPolicy struct {
	*apppolicy.Policy
	id          string
	route       string
	disabled    bool
	defaultFrom string // as configured, "" when none
	maxBytes    int64
	perMinute   int
}

func compilePolicies(cfg *config.Config) (map[string]*appPolicy, error) {
	pols, err := cfg.Policies()
	if err != nil {
		return nil, err
	}
	out := make(map[string]*appPolicy, len(pols))
	for id, p := range pols {
		out[id] = &appPolicy{Policy: p, id: p.App(), route: p.Route(), disabled: p.Disabled(),
			defaultFrom: p.DefaultFrom(), maxBytes: p.MaxBytes(), perMinute: p.PerMinute()}
	}
	return out, nil
}
