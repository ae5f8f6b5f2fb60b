package addrpolicy

import (
	"strings"
	"testing"
)

// The two former address checkers (compose's for the API, this package's
// for the configuration) disagreed on these; each row is the one answer now
// given to both.
func TestAddressRulesResolved(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr    string
		wantErr string // "" for accepted
		was     string // what each side did before
	}{
		{"root@localhost", "single label", "config accepted, API refused"},
		{"a@com", "single label", "config accepted, API refused"},
		{"a@192.0.2.1", "IP address", "config accepted, API refused"},
		{"a@example.123", "IP address", "config accepted, API refused"},
		{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 60) + ".com", "longer than 254", "config accepted, API refused"},
		{"a@x_y.com", "contains '_'", "both refused"},
		{"Jane.Doe+x@Mail.Contoso.com", "", "both accepted"},
		{"a@xn--bcher-kva.example", "", "both accepted"},
		{"a@1example.com", "", "both accepted (RFC 1123 leading digit)"},
	}
	for _, tt := range tests {
		err := ValidateAddress(tt.addr)
		_, perr := Parse(tt.addr)
		_, merr := ParseMailbox(tt.addr)
		for name, err := range map[string]error{"ValidateAddress": err, "Parse": perr, "ParseMailbox": merr} {
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("%s(%q) (%s): %v", name, tt.addr, tt.was, err)
				}
				continue
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s(%q) (%s) = %v, want an error containing %q", name, tt.addr, tt.was, err, tt.wantErr)
			}
		}
	}
}

func TestDisplayNameLookingLikeAnAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		ok bool
	}{
		{`Jane Doe <jane@contoso.com>`, true},
		{`"jane@contoso.com" <jane@contoso.com>`, true},
		{`=?utf-8?q?Zo=C3=AB?= <zoe@contoso.com>`, true},
		{`=?iso-8859-1?q?J=F6rg?= <j@contoso.com>`, true},
		{`=?utf-7?q?Caf+AOk-?= <a@contoso.com>`, true},
		{`"ceo@contoso.com" <evil@evil.example>`, false},
		{`=?utf-8?q?ceo=40contoso.com?= <evil@evil.example>`, false},
		{`=?utf-8?b?Y2VvQGNvbnRvc28uY29t?= <evil@evil.example>`, false},
		{`=?iso-8859-1?q?ceo=40contoso.com?= <evil@evil.example>`, false},
		{`=?utf-7?q?ceo+AEA-contoso.com?= <evil@evil.example>`, false},
		{`=?UTF-7?B?Y2VvK0FFQS1jb250b3NvLmNvbQ==?= <evil@evil.example>`, false},
		{`=?utf-16be?b?AGMAZQBvAEAAYw==?= <evil@evil.example>`, false},
		{"ceo\uFF20contoso.com <evil@evil.example>", false},
		{"ceo\uFE6Bcontoso.com <evil@evil.example>", false},
		{`=?utf-8?q?ceo=EF=BC=A0contoso.com?= <evil@evil.example>`, false},
		{"\uFF1Cceo\uFF1E <evil@evil.example>", false},
	}
	for _, tt := range tests {
		for name, parse := range map[string]func(string) (any, error){
			"ParseMailbox":       func(s string) (any, error) { return ParseMailbox(s) },
			"ParseHeaderMailbox": func(s string) (any, error) { return ParseHeaderMailbox(s) },
		} {
			a, err := parse(tt.in)
			if tt.ok && err != nil {
				t.Errorf("%s(%q): %v", name, tt.in, err)
			}
			if !tt.ok && err == nil {
				t.Errorf("%s(%q) accepted as %v", name, tt.in, a)
			}
		}
	}
}

func TestDecodeUTF7(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Hi Mom -+Jjo--!": "Hi Mom -\u263a-!", // RFC 2152's examples
		"+ZeVnLIqe-":      "\u65e5\u672c\u8a9e",
		"A+ImIDkQ.":       "A\u2262\u0391.",
		"1 +- 1":          "1 + 1",
		"ceo+AEA-x.com":   "ceo@x.com",
		"+2D3cAQ-":        "\U0001F401", // a surrogate pair
		"plain":           "plain",
	} {
		if got := decodeUTF7([]byte(in)); got != want {
			t.Errorf("decodeUTF7(%q) = %q, want %q", in, got, want)
		}
	}
}
