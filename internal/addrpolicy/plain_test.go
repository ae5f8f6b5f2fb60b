package addrpolicy

import (
	"net/mail"
	"strings"
	"testing"
)

// plainMailboxes are inputs of parsePlainMailbox: the two shapes it reads
// itself, and near misses it must leave to net/mail.
var plainMailboxes = []string{
	"jane@contoso.com", "Jane <jane@contoso.com>", "Jane Doe <jane@Contoso.COM>", "Jane Doe   <jane@contoso.com>",
	"Jane<jane@contoso.com>", "J0 2 x <a.b+c/d=e?f^g_h`i{j|k}l~m!n#o$p%q&r's*t-u@x-y.contoso.com>", "x@y",
	"<jane@contoso.com>", "Jane  Doe <jane@contoso.com>", " Jane <jane@contoso.com>", "Jane. <jane@contoso.com>",
	"Jöne <jane@contoso.com>", `"Jane" <jane@contoso.com>`, "=?utf-8?q?Jane?= <jane@contoso.com>", "Jane (x) <jane@contoso.com>",
	".jane@contoso.com", "jane.@contoso.com", "ja..ne@contoso.com", "jane@contoso..com", "jane@.contoso.com", "jane@",
	"@contoso.com", "jane", "jane@contoso.com>", "Jane <jane@contoso.com> ", "Jane <jane@contoso.com>>", "Jane <<jane@contoso.com>",
	"Jane <jane@contoso.com", "Jane <ja ne@contoso.com>", "jane@[192.0.2.1]", "jane@contoso.com (Jane)", "a@b@contoso.com",
	"Jane <a@b@contoso.com>", "Jane <>", "Jane\t<jane@contoso.com>", "jane@contoso.com.", `ja"ne@contoso.com`,
}

// TestPlainMailboxMatchesNetMail: what parsePlainMailbox reads, net/mail
// reads the same way; and it does read the two usual shapes.
func TestPlainMailboxMatchesNetMail(t *testing.T) {
	for _, s := range []string{"jane@contoso.com", "Jane Doe <jane@contoso.com>", "Jane<jane@contoso.com>"} {
		if _, ok := parsePlainMailbox(s); !ok {
			t.Errorf("%q not read by parsePlainMailbox", s)
		}
	}
	for _, s := range plainMailboxes {
		comparePlainMailbox(t, s)
	}
}

func FuzzPlainMailboxMatchesNetMail(f *testing.F) {
	for _, s := range plainMailboxes {
		f.Add(s)
	}
	f.Fuzz(comparePlainMailbox)
}

func comparePlainMailbox(t *testing.T, s string) {
	got, ok := parsePlainMailbox(s)
	if !ok {
		return
	}
	want, err := (&mail.AddressParser{}).Parse(s)
	if err != nil {
		t.Fatalf("%q: parsePlainMailbox read %+v, net/mail refuses it: %v", s, got, err)
	}
	if *got != *want {
		t.Fatalf("%q: parsePlainMailbox read %+v, net/mail %+v", s, got, want)
	}
}

// TestSqueezeSpaceLeavesSqueezedAlone holds SqueezeSpace's shortcut to
// what it computes otherwise: blanks trimmed, runs of spaces and tabs one
// space.
func TestSqueezeSpaceLeavesSqueezedAlone(t *testing.T) {
	for _, s := range []string{"", "a", "a b", " a", "a ", "a  b", "a\tb", "\t", " ", "a b c", "ab  "} {
		compareSqueeze(t, s)
	}
}

func FuzzSqueezeSpace(f *testing.F) {
	f.Add("a  b\t c ")
	f.Fuzz(compareSqueeze)
}

func compareSqueeze(t *testing.T, s string) {
	want := strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
	if got := SqueezeSpace(s); got != want {
		t.Fatalf("SqueezeSpace(%q) = %q, want %q", s, got, want)
	}
}

// BenchmarkParseMailbox parses the two usual shapes of an address.
func BenchmarkParseMailbox(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range []string{"ops@contoso.com", "Alerts <alerts@alerts.contoso.com>"} {
			if _, err := ParseMailbox(s); err != nil {
				b.Fatal(err)
			}
		}
	}
}
