package addrpolicy

import (
	"strings"
	"testing"
)

func mustParse(t *testing.T, s string) Pattern {
	t.Helper()
	p, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return p
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		kind    Kind
		str     string // canonical form
		wantErr string // substring of the error; "" for no error
	}{
		{in: "a@contoso.com", kind: KindAddress, str: "a@contoso.com"},
		{in: "Jane.Doe@Contoso.COM", kind: KindAddress, str: "jane.doe@contoso.com"},
		{in: "o'brien+tag@x-y.contoso.com", kind: KindAddress, str: "o'brien+tag@x-y.contoso.com"},
		{in: "*@contoso.com", kind: KindDomain, str: "*@contoso.com"},
		{in: "*@*.Contoso.com", kind: KindSubdomains, str: "*@*.contoso.com"},
		// Refused since the address parser has one owner: the door never
		// accepted root@localhost, so a pattern for it could match nothing.
		{in: "root@localhost", wantErr: "single label"},

		{in: "", wantErr: "empty address pattern"},
		{in: "a*@x.com", wantErr: "partial wildcards are not supported"},
		{in: "*a@x.com", wantErr: "partial wildcards are not supported"},
		{in: "a@*.x.com", wantErr: "needs * before @"},
		{in: "*@", wantErr: "no domain after @"},
		{in: "@x.com", wantErr: "nothing before @"},
		{in: "*@*", wantErr: "would match every address"},
		{in: "*@x.*.com", wantErr: "a wildcard may only be a leading *."},
		{in: "*@*.*.com", wantErr: "a wildcard may only be a leading *."},
		{in: "x.com", wantErr: "no @"},
		{in: "a@b@x.com", wantErr: "more than one @"},
		{in: "a @x.com", wantErr: "contains a space"},
		{in: " a@x.com", wantErr: "contains a space"},
		{in: "a@x.com\r\nBcc: e@evil.com", wantErr: "contains a line break"},
		{in: "a@x.com\n", wantErr: "contains a line break"},
		{in: "a\x00@x.com", wantErr: "control character"},
		{in: "a@x..com", wantErr: "empty label"},
		{in: "a@x.com.", wantErr: "ends with a dot"},
		{in: "a@-x.com", wantErr: "hyphen"},
		{in: "a@x_y.com", wantErr: `contains '_'`},
		{in: "a@[192.0.2.1]", wantErr: "address literals"},
		{in: "a@bücher.de", wantErr: "xn--"},
		{in: ".a@x.com", wantErr: "starts or ends with a dot"},
		{in: "a..b@x.com", wantErr: "two in a row"},
		{in: `"a b"@x.com`, wantErr: "contains a space"},
		{in: `"ab"@x.com`, wantErr: "quoted local parts are not supported"},
		{in: strings.Repeat("a", 65) + "@x.com", wantErr: "longer than 64"},
		{in: "a@" + strings.Repeat("a", 64) + ".com", wantErr: "longer than 63"},
	}
	for _, tt := range tests {
		p, err := Parse(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if p.Kind() != tt.kind || p.String() != tt.str {
			t.Errorf("Parse(%q) = kind %d %q, want kind %d %q", tt.in, p.Kind(), p, tt.kind, tt.str)
		}
	}
}

func TestPatternMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		addr    string
		want    bool
	}{
		// Exact address, case-insensitive in both parts.
		{"a@contoso.com", "a@contoso.com", true},
		{"a@contoso.com", "A@CONTOSO.com", true},
		{"Jane@Contoso.com", "jane@contoso.COM", true},
		{"a@contoso.com", "b@contoso.com", false},
		{"a@contoso.com", "a@x.contoso.com", false},
		{"a@contoso.com", "a@contoso.com.evil.com", false},

		// Whole domain: not its subdomains.
		{"*@contoso.com", "anyone@contoso.com", true},
		{"*@contoso.com", "Anyone@Contoso.Com", true},
		{"*@contoso.com", "a@x.contoso.com", false},
		{"*@contoso.com", "a@evilcontoso.com", false},
		{"*@contoso.com", "a@contoso.co", false},

		// Every subdomain at any depth, but not the domain itself.
		{"*@*.contoso.com", "a@x.contoso.com", true},
		{"*@*.contoso.com", "a@y.x.contoso.com", true},
		{"*@*.contoso.com", "a@X.Contoso.COM", true},
		{"*@*.contoso.com", "a@contoso.com", false},
		{"*@*.contoso.com", "a@evilcontoso.com", false},
		{"*@*.contoso.com", "a@.contoso.com", false},
		{"*@*.contoso.com", "a@x..contoso.com", false},

		// Not bare addresses.
		{"*@contoso.com", "contoso.com", false},
		{"*@contoso.com", "@contoso.com", false},
		{"*@contoso.com", "a@", false},
		{"*@contoso.com", "", false},
	}
	for _, tt := range tests {
		p := mustParse(t, tt.pattern)
		if got := p.Match(tt.addr); got != tt.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tt.pattern, tt.addr, got, tt.want)
		}
	}
}

func TestZeroPatternMatchesNothing(t *testing.T) {
	t.Parallel()
	var p Pattern
	if p.Match("a@contoso.com") {
		t.Error("zero Pattern matched")
	}
	if (Set{mustParse(t, "*@contoso.com")}).Covers(p) {
		t.Error("zero Pattern is covered")
	}
}

func TestSetMatch(t *testing.T) {
	t.Parallel()
	s, err := ParseSet([]string{"relay@contoso.com", "*@alerts.contoso.com", "*@*.fabrikam.com"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"Relay@Contoso.com", true},
		{"x@alerts.contoso.com", true},
		{"x@eu.fabrikam.com", true},
		{"other@contoso.com", false},
		{"x@fabrikam.com", false},
	}
	for _, tt := range tests {
		if got := s.Match(tt.addr); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if (Set{}).Match("a@contoso.com") {
		t.Error("empty Set matched")
	}
	if got, want := s.String(), "relay@contoso.com, *@alerts.contoso.com, *@*.fabrikam.com"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestParseSetReportsEveryBadPattern(t *testing.T) {
	t.Parallel()
	_, err := ParseSet([]string{"ok@contoso.com", "a*@x.com", "*@", "fine@x.com"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`[1] "a*@x.com"`, `[2] "*@"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "[0]") || strings.Contains(err.Error(), "[3]") {
		t.Errorf("error %q names a good pattern", err)
	}
}

func TestSetCovers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		set  []string
		p    string
		want bool
	}{
		// An exact address is within anything that matches it.
		{[]string{"a@contoso.com"}, "a@contoso.com", true},
		{[]string{"a@contoso.com"}, "A@Contoso.com", true},
		{[]string{"a@contoso.com"}, "b@contoso.com", false},
		{[]string{"*@contoso.com"}, "a@contoso.com", true},
		{[]string{"*@*.contoso.com"}, "a@x.contoso.com", true},
		{[]string{"*@*.contoso.com"}, "a@contoso.com", false},

		// *@d is within *@d, or *@*.e when d is a proper subdomain of e.
		{[]string{"*@contoso.com"}, "*@contoso.com", true},
		{[]string{"*@Contoso.com"}, "*@CONTOSO.COM", true},
		{[]string{"*@*.contoso.com"}, "*@alerts.contoso.com", true},
		{[]string{"*@*.contoso.com"}, "*@a.b.contoso.com", true},
		{[]string{"*@*.contoso.com"}, "*@contoso.com", false},
		{[]string{"*@contoso.com"}, "*@alerts.contoso.com", false},
		{[]string{"*@alerts.contoso.com"}, "*@contoso.com", false},
		{[]string{"a@contoso.com", "b@contoso.com"}, "*@contoso.com", false},
		{[]string{"*@*.contoso.com"}, "*@evilcontoso.com", false},

		// *@*.d is within *@*.e when d is e or a subdomain of e.
		{[]string{"*@*.contoso.com"}, "*@*.contoso.com", true},
		{[]string{"*@*.contoso.com"}, "*@*.alerts.contoso.com", true},
		{[]string{"*@*.alerts.contoso.com"}, "*@*.contoso.com", false},
		{[]string{"*@contoso.com"}, "*@*.contoso.com", false},
		{[]string{"*@alerts.contoso.com"}, "*@*.alerts.contoso.com", false},
		{[]string{"a@x.contoso.com"}, "*@*.contoso.com", false},

		// Any one pattern of the set is enough.
		{[]string{"relay@contoso.com", "*@alerts.contoso.com"}, "*@alerts.contoso.com", true},
		{[]string{"relay@contoso.com", "*@alerts.contoso.com"}, "*@evil.com", false},
		{nil, "a@contoso.com", false},
	}
	for _, tt := range tests {
		s, err := ParseSet(tt.set)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Covers(mustParse(t, tt.p)); got != tt.want {
			t.Errorf("%v.Covers(%q) = %v, want %v", tt.set, tt.p, got, tt.want)
		}
	}
}

func TestValidateAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantErr string
	}{
		{in: "jane@contoso.com"},
		{in: "Jane.Doe+x@Mail.Contoso.com"},
		{in: "", wantErr: "empty address"},
		{in: "jane", wantErr: "no @"},
		{in: "jane@", wantErr: "empty domain"},
		{in: "jane@contoso.com\r\n", wantErr: "line break"},
		{in: "Jane <jane@contoso.com>", wantErr: "contains a space"},
		{in: "<jane@contoso.com>", wantErr: "contains '<'"},
	}
	for _, tt := range tests {
		err := ValidateAddress(tt.in)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateAddress(%q): %v", tt.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateAddress(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
		}
	}
}
