package mailbox

import (
	"slices"
	"testing"

	"github.com/mailgate/mailgate/internal/config"
)

func TestWhichMailbox(t *testing.T) {
	fixed := &config.Route{Auth: config.RouteAuth{Mechanism: config.MechLogin, Username: "relay@contoso.com"}}
	from := &config.Route{Auth: config.RouteAuth{Mechanism: config.MechXOAUTH2, Username: config.FromMailbox},
		Mailboxes: []string{"a@contoso.com", "b@contoso.com"}}
	none := &config.Route{Type: config.RouteConnector}
	cases := []struct {
		name              string
		r                 *config.Route
		of, probe, limits string
		fixedMailbox      bool
		known             []string
	}{
		{"auth.username", fixed, "relay@contoso.com", "relay@contoso.com", "relay@contoso.com", true, []string{"relay@contoso.com"}},
		{"{from}", from, "alerts@contoso.com", "a@contoso.com", "alerts@contoso.com", false, []string{"a@contoso.com", "b@contoso.com"}},
		{"no AUTH", none, "", "", RouteWide, true, []string{RouteWide}},
	}
	for _, c := range cases {
		of := Of(c.r, "alerts@contoso.com")
		if of != c.of || Probe(c.r) != c.probe || Limits(c.r, of) != c.limits || Fixed(c.r) != c.fixedMailbox ||
			!slices.Equal(Known(c.r), c.known) {
			t.Errorf("%s: Of %q Probe %q Limits %q Fixed %v Known %v", c.name, of, Probe(c.r), Limits(c.r, of), Fixed(c.r), Known(c.r))
		}
	}
}
