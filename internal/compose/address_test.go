package compose

import (
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in         string
		addr, name string // want, when ok
		ok         bool
	}{
		{in: "ops@contoso.com", addr: "ops@contoso.com", ok: true},
		{in: "  ops@Contoso.COM\t", addr: "ops@contoso.com", ok: true},
		{in: "Ops@contoso.com", addr: "Ops@contoso.com", ok: true},
		{in: "Jane Doe <jane@contoso.com>", addr: "jane@contoso.com", name: "Jane Doe", ok: true},
		{in: `"Doe, Jane" <jane@contoso.com>`, addr: "jane@contoso.com", name: "Doe, Jane", ok: true},
		{in: "Zoë <zoe@contoso.com>", addr: "zoe@contoso.com", name: "Zoë", ok: true},
		{in: "=?utf-8?q?Zo=C3=AB?= <zoe@contoso.com>", addr: "zoe@contoso.com", name: "Zoë", ok: true},
		{in: "<jane@contoso.com>", addr: "jane@contoso.com", ok: true},
		{in: "jane@contoso.com (Jane)", addr: "jane@contoso.com", name: "Jane", ok: true}, // net/mail takes the comment as the name
		{in: `"jane@contoso.com" <jane@contoso.com>`, addr: "jane@contoso.com", name: "jane@contoso.com", ok: true},
		{in: "a.b+c_d-e@x-y.sub.contoso.co.uk", addr: "a.b+c_d-e@x-y.sub.contoso.co.uk", ok: true},
		{in: "a@xn--bcher-kva.example", addr: "a@xn--bcher-kva.example", ok: true},

		{in: ""},
		{in: "   "},
		{in: "not an address"},
		{in: "a@"},
		{in: "@contoso.com"},
		{in: "a@contoso.com, b@contoso.com"},
		{in: "a@contoso.com; b@contoso.com"},
		{in: "Team: a@contoso.com;"},
		{in: "Team:;"},
		{in: "a@contoso.com\r\nBcc: x@evil.example"},
		{in: "a@contoso.com\n"},
		{in: "a@contoso.com\x00"},
		{in: "a\x1b@contoso.com"},
		{in: "=?utf-8?q?x=0D=0ABcc:_y@evil.example?= <a@contoso.com>"},
		{in: `"ceo@contoso.com" <evil@evil.example>`},
		{in: `"CEO <ceo@contoso.com>" <evil@evil.example>`},
		{in: `=?utf-8?q?ceo=40contoso.com?= <evil@evil.example>`},
		{in: "jörg@contoso.com"},
		{in: "a@bücher.example"},
		{in: "a@localhost"},
		{in: "a@[192.0.2.1]"},
		{in: "a@192.0.2.1"},
		{in: "a@-bad.example"},
		{in: "a@bad-.example"},
		{in: "a@bad..example"},
		{in: "a@under_score.example"},
		{in: `"john doe"@contoso.com`},
		{in: "a..b@contoso.com"},
		{in: strings.Repeat("l", 65) + "@contoso.com"},
		{in: "a@" + strings.Repeat("l", 64) + ".example"},
		{in: "a@" + strings.Repeat("abcdefghi.", 26) + "example"},
		{in: strings.Repeat("N", 300) + " <a@contoso.com>"},
		{in: "=?x-unknown?q?abc?= <a@contoso.com>"},
		{in: "\xff <a@contoso.com>"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			a, err := ParseAddress(tt.in)
			if !tt.ok {
				if err == nil {
					t.Fatalf("accepted as %q <%s>", a.Name, a.Address)
				}
				wantError(t, err, CodeValidationFailed, "")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Address != tt.addr || a.Name != tt.name {
				t.Errorf("got %q <%s>, want %q <%s>", a.Name, a.Address, tt.name, tt.addr)
			}
		})
	}
}

func TestDisplayAddressRoundTrip(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"a@contoso.com",
		"Jane Doe <jane@contoso.com>",
		`"Doe, Jane" <jane@contoso.com>`,
		`"Say \"hi\" \\ there" <a@contoso.com>`,
		"Zoë Ångström <zoe@contoso.com>",
		`"a@contoso.com" <a@contoso.com>`,
	} {
		a, err := ParseAddress(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		shown := displayAddress(a)
		b, err := ParseAddress(shown)
		if err != nil {
			t.Fatalf("%s shown as %s: %v", in, shown, err)
		}
		if *a != *b {
			t.Errorf("%s shown as %s parses as %v, want %v", in, shown, b, a)
		}
	}
}
