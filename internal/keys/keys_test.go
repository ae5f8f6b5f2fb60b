package keys

import (
	"strings"
	"testing"
)

// Every key of a route carries the route's hash tag, every key of a mailbox
// the route:mailbox tag, and every key starts with the prefix, so two
// prefixes never share a key.
func TestLayout(t *testing.T) {
	a, b := New("a"), New("b")
	r := a.Route("m365")
	for _, k := range []string{r.Msg("x"), r.Events("x"), r.Ready(), r.Inflight(), r.Failed(),
		r.Idempotency("app", "k"), r.NoIdempotency(), r.Health(), r.Probe(), r.MailboxWait("X@Y"), r.Waiting(),
		r.Lane("x@y"), r.Lanes(), r.LaneWait(), r.ExpireLock(), r.Base()} {
		if !strings.HasPrefix(k, "a:{m365}:") {
			t.Errorf("route key %q lacks a:{m365}:", k)
		}
	}
	if got := r.MailboxWait("Alerts@Contoso.com"); got != "a:{m365}:mailbox-wait:alerts@contoso.com" {
		t.Errorf("mailbox wait key %q", got)
	}
	m, err := a.Mailbox("m365", "Alerts@Contoso.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{m.Conns, m.Log, m.Recipients, m.GCRA} {
		if !strings.HasPrefix(k, "a:limits:{m365:alerts@contoso.com}:") {
			t.Errorf("mailbox key %q", k)
		}
	}
	if a.APIRate("app") == b.APIRate("app") || a.Revoked("j") == b.Revoked("j") ||
		a.SMTPPassword("p") == b.SMTPPassword("p") || a.Revocations() == b.Revocations() ||
		a.RevocationsIndexed() == b.RevocationsIndexed() || a.RevocationsChannel() == b.RevocationsChannel() ||
		a.RevocationAcks("n") == b.RevocationAcks("n") {
		t.Error("two prefixes share a key")
	}
	// The pattern finds the marks of its prefix only, whatever the prefix.
	for prefix, want := range map[string]string{"a": "a:revoked:*", "x*[y]?\\": "x\\*\\[y\\]\\?\\\\:revoked:*"} {
		if got := New(prefix).RevokedPattern(); got != want {
			t.Errorf("RevokedPattern of %q = %q, want %q", prefix, got, want)
		}
	}
	if New("").Prefix() != DefaultPrefix {
		t.Error("empty prefix is not the default")
	}
	for _, bad := range []string{"", "a:b", "{a}"} {
		if _, err := a.Mailbox(bad, "m@x"); err == nil {
			t.Errorf("route %q accepted", bad)
		}
	}
	if _, err := a.Mailbox("r", ""); err == nil {
		t.Error("empty mailbox accepted")
	}
	if r.Idempotency("app", "k") == r.Idempotency("app", "k2") || strings.Contains(r.Idempotency("app", "k:{x}"), "{x}") {
		t.Error("idempotency keys must be distinct hashes of the client's key")
	}
}
