package config

import (
	"slices"
	"strings"
	"testing"
)

func TestSenderSet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		route        Route
		want         string // the set's String
		unrestricted bool
		wantErr      string
	}{
		{
			name:  "smtp-auth: the mailbox and its send_as",
			route: Route{Type: RouteSMTPAuth, Auth: RouteAuth{Username: "Relay@Contoso.com"}, SendAs: []string{"helpdesk@contoso.com", "*@alerts.contoso.com"}},
			want:  "relay@contoso.com, helpdesk@contoso.com, *@alerts.contoso.com",
		},
		{
			name:  "smtp-auth: only the mailbox",
			route: Route{Type: RouteSMTPAuth, Auth: RouteAuth{Username: "relay@contoso.com"}},
			want:  "relay@contoso.com",
		},
		{
			name:  "smtp-auth {from}: exactly the mailboxes",
			route: Route{Type: RouteSMTPAuth, Auth: RouteAuth{Username: FromMailbox}, Mailboxes: []string{"alice@contoso.com", "bob@contoso.com"}, SendAs: []string{"*@contoso.com"}},
			want:  "alice@contoso.com, bob@contoso.com",
		},
		{
			name:  "connector: each accepted domain",
			route: Route{Type: RouteConnector, AcceptedDomains: []string{"contoso.com", "Alerts.Contoso.com"}},
			want:  "*@contoso.com, *@alerts.contoso.com",
		},
		{
			name:         "smtp without send_as: anything",
			route:        Route{Type: RouteSMTP},
			unrestricted: true,
		},
		{
			name:  "smtp with send_as",
			route: Route{Type: RouteSMTP, SendAs: []string{"*@contoso.com"}},
			want:  "*@contoso.com",
		},
		{name: "bad username", route: Route{Name: "r", Type: RouteSMTPAuth, Auth: RouteAuth{Username: "relay"}}, wantErr: "route r: auth.username"},
		{name: "bad send_as", route: Route{Name: "r", Type: RouteSMTPAuth, Auth: RouteAuth{Username: "a@b.com"}, SendAs: []string{"a*@b.com"}}, wantErr: "[1]"},
		{name: "bad domain", route: Route{Name: "r", Type: RouteConnector, AcceptedDomains: []string{"a b"}}, wantErr: "contains a space"},
		{name: "unknown type", route: Route{Name: "r", Type: "x"}, wantErr: `unknown type "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set, unrestricted, err := tt.route.SenderSet()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if unrestricted != tt.unrestricted || set.String() != tt.want {
				t.Errorf("SenderSet() = %q, unrestricted %v; want %q, %v", set, unrestricted, tt.want, tt.unrestricted)
			}
		})
	}
}

// TestPolicyCheck puts an app on a route and expects exactly the listed
// keys to be reported as outside what the route can send as.
func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	fromMailboxes := func(c *Config) {
		r := c.Route("m365")
		r.Auth.Username, r.SendAs = FromMailbox, nil
		r.Mailboxes = []string{"alice@contoso.com", "bob@contoso.com"}
	}
	sendAs := func(list ...string) func(c *Config) {
		return func(c *Config) { c.Route("m365").SendAs = list }
	}
	localSMTP := func(list ...string) func(c *Config) {
		return func(c *Config) {
			c.Routes = append(c.Routes, Route{Name: "local", Type: RouteSMTP, Host: "localhost", Port: 25, TLS: RouteTLS{Mode: TLSNone}, SendAs: list})
		}
	}
	tests := []struct {
		name     string
		route    string
		change   func(c *Config) // of the route; nil leaves the example's
		allowed  []string
		dflt     string
		outside  []string // keys under apps[monitoring]
		wantText []string // in the first outside problem
	}{
		{
			name:    "smtp-auth: the mailbox and send_as, in any case",
			route:   "m365",
			allowed: []string{"relay@contoso.com", "Helpdesk@Contoso.com", "*@alerts.contoso.com", "x@ALERTS.contoso.com"},
			dflt:    "Relay <RELAY@contoso.com>",
		},
		{
			name:    "smtp-auth: the brief's example",
			route:   "m365",
			allowed: []string{"relay@contoso.com", "*@evil.com"},
			outside: []string{"from.allowed[1]"},
			wantText: []string{`"*@evil.com" is outside what route "m365" (smtp-auth as relay@contoso.com) can send as: ` +
				`relay@contoso.com, helpdesk@contoso.com, *@alerts.contoso.com; ` +
				`Exchange Online would refuse it with 550 5.7.60 (add a Send As grant and list it under send_as)`},
		},
		{
			name:    "smtp-auth: a whole domain is not a mailbox",
			route:   "m365",
			allowed: []string{"*@contoso.com"},
			outside: []string{"from.allowed[0]"},
		},
		{
			name:    "smtp-auth: send_as of a domain does not reach its subdomains",
			route:   "m365",
			allowed: []string{"*@*.alerts.contoso.com", "a@eu.alerts.contoso.com"},
			outside: []string{"from.allowed[0]", "from.allowed[1]"},
		},
		{
			name:     "smtp-auth: default outside",
			route:    "m365",
			dflt:     "Someone <someone@contoso.com>",
			outside:  []string{"from.default"},
			wantText: []string{`"someone@contoso.com" is outside what route "m365"`, "550 5.7.60"},
		},
		{
			name:    "smtp-auth: wildcard subdomains in send_as",
			route:   "m365",
			change:  sendAs("*@*.contoso.com"),
			allowed: []string{"*@alerts.contoso.com", "*@*.eu.contoso.com", "*@*.contoso.com", "a@x.y.contoso.com", "relay@contoso.com"},
			dflt:    "a@alerts.contoso.com",
		},
		{
			name:    "smtp-auth: wildcard subdomains exclude the domain itself",
			route:   "m365",
			change:  sendAs("*@*.contoso.com"),
			allowed: []string{"*@contoso.com", "other@contoso.com", "*@evilcontoso.com"},
			dflt:    "x@contoso.com",
			outside: []string{"from.allowed[0]", "from.allowed[1]", "from.allowed[2]", "from.default"},
		},
		{
			name:    "{from}: exactly the mailboxes",
			route:   "m365",
			change:  fromMailboxes,
			allowed: []string{"alice@contoso.com", "BOB@contoso.com"},
			dflt:    "Alice <alice@contoso.com>",
		},
		{
			name:     "{from}: not the rest of the domain",
			route:    "m365",
			change:   fromMailboxes,
			allowed:  []string{"*@contoso.com", "alice@contoso.com"},
			dflt:     "carol@contoso.com",
			outside:  []string{"from.allowed[0]", "from.default"},
			wantText: []string{`"*@contoso.com" is outside what route "m365" (smtp-auth as each From mailbox) can send as: alice@contoso.com, bob@contoso.com;`, "add it to mailboxes"},
		},
		{
			name:    "connector: any address of an accepted domain",
			route:   "relay",
			allowed: []string{"*@contoso.com", "x@alerts.contoso.com", "*@Alerts.Contoso.com"},
			dflt:    "x@contoso.com",
		},
		{
			name:     "connector: not subdomains, not other domains",
			route:    "relay",
			allowed:  []string{"*@*.contoso.com", "a@fabrikam.com", "a@eu.contoso.com"},
			dflt:     "x@eu.alerts.contoso.com",
			outside:  []string{"from.allowed[0]", "from.allowed[1]", "from.allowed[2]", "from.default"},
			wantText: []string{`"*@*.contoso.com" is outside what route "relay" (connector) can send as: *@contoso.com, *@alerts.contoso.com;`, "550 5.7.64"},
		},
		{
			name:    "smtp without send_as: anything",
			route:   "local",
			change:  localSMTP(),
			allowed: []string{"*@fabrikam.com", "*@*.example"},
			dflt:    "a@fabrikam.com",
		},
		{
			name:     "smtp with send_as",
			route:    "local",
			change:   localSMTP("*@contoso.com"),
			allowed:  []string{"a@contoso.com", "a@fabrikam.com"},
			outside:  []string{"from.allowed[1]"},
			wantText: []string{`route "local" (smtp) can send as: *@contoso.com;`, "send_as"},
		},
		{
			name:    "an invalid route skips the check",
			route:   "m365",
			change:  func(c *Config) { c.Route("m365").Auth.Username = "relay" },
			allowed: []string{"*@evil.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			c := b.load(t, exampleYAML)
			if tt.change != nil {
				tt.change(c)
			}
			a := c.App("monitoring")
			a.Route, a.From = tt.route, AppFrom{Default: tt.dflt, Allowed: tt.allowed}

			var got []string
			var first string
			for _, p := range c.Validate() {
				if strings.Contains(p.Message, "is outside what route") {
					got = append(got, strings.TrimPrefix(p.Key, "apps[monitoring]."))
					if first == "" {
						first = p.Message
					}
				}
			}
			if !slices.Equal(got, tt.outside) {
				t.Errorf("outside: got %q, want %q", got, tt.outside)
			}
			for _, w := range tt.wantText {
				if !strings.Contains(first, w) {
					t.Errorf("message %q does not contain %q", first, w)
				}
			}
		})
	}
}

// TestPolicyCheckFromFile runs the policy check the way `mailgate config
// check` does and checks the line it prints.
func TestPolicyCheckFromFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	yaml := strings.Replace(exampleYAML, `route: relay`, `route: m365`, 1)
	yaml = strings.Replace(yaml, `allowed: ["alerts@alerts.contoso.com", "*@alerts.contoso.com"]`, `allowed: ["alerts@alerts.contoso.com", "*@evil.com"]`, 1)
	problems := b.check(t, yaml)
	if len(problems) != 1 {
		t.Fatalf("want one problem, got:\n%s", Problems(problems))
	}
	want := `apps[monitoring].from.allowed[1]: "*@evil.com" is outside what route "m365" (smtp-auth as relay@contoso.com) can send as: ` +
		`relay@contoso.com, helpdesk@contoso.com, *@alerts.contoso.com; Exchange Online would refuse it with 550 5.7.60 (add a Send As grant and list it under send_as)`
	if got := problems[0].String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
