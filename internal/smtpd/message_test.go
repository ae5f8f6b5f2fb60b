package smtpd

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailgate/mailgate/internal/intake"
	"github.com/mailgate/mailgate/internal/queue"
)

func TestSmuggling(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		data string
		want bool
	}{
		{"Subject: x\r\n\r\nbody\r\n", false},
		{"a\r\n.\r\nb\r\n", false},          // a dot-stuffed "." line, unstuffed: fine
		{"a\r\n.x\r\n", false},              // a line starting with a dot
		{"a\n.b\n", false},                  // bare LF, but no lone dot
		{"a.\r\n", false},                   // a dot ending a line
		{"a\n.\r\nMAIL FROM:<x>\r\n", true}, // CVE-2023-51766
		{"a\r\n.\nb\r\n", true},
		{"a\n.\nb\n", true},
		{"a\r.\r\nb\r\n", true},
		{"a\r\n.\rb\r\n", true},
		{".\nb\r\n", true},
		{"a\n.", true},
	} {
		if got := smuggling([]byte(tt.data)); got != tt.want {
			t.Errorf("smuggling(%q) = %v, want %v", tt.data, got, tt.want)
		}
	}
}

func TestReceived(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 13, 30, 0, 0, time.UTC)
	got := string(received("scanner.lan", netip.MustParseAddr("10.100.102.3"), "relay.contoso.com", true, true, "id1",
		[]string{"ops@contoso.com"}, now))
	want := "Received: from scanner.lan ([10.100.102.3])\r\n\tby relay.contoso.com (mailgate) with ESMTPSA id id1\r\n" +
		"\tfor <ops@contoso.com>;\r\n\tTue, 01 Dec 2026 13:30:00 +0000\r\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	// Two recipients: none named (Bcc privacy); no TLS, no AUTH; a HELO
	// argument with a comment is not copied; IPv6 literal form.
	got = string(received("x (evil)", netip.MustParseAddr("2001:db8::1"), "relay.contoso.com", false, false, "id2",
		[]string{"a@contoso.com", "b@contoso.com"}, now))
	want = "Received: from unknown ([IPv6:2001:db8::1])\r\n\tby relay.contoso.com (mailgate) with ESMTP id id2;\r\n" +
		"\tTue, 01 Dec 2026 13:30:00 +0000\r\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestLoginServer(t *testing.T) {
	t.Parallel()
	var user, pass string
	ls := &loginServer{callback: func(u, p string) error { user, pass = u, p; return nil }}
	if c, done, err := ls.Next(nil); string(c) != "Username:" || done || err != nil {
		t.Fatalf("step 1: %q %v %v", c, done, err)
	}
	if c, done, err := ls.Next([]byte("dev")); string(c) != "Password:" || done || err != nil {
		t.Fatalf("step 2: %q %v %v", c, done, err)
	}
	if _, done, err := ls.Next([]byte("pw")); !done || err != nil || user != "dev" || pass != "pw" {
		t.Fatalf("step 3: %v %v %q %q", done, err, user, pass)
	}
	// The user name as initial response (AUTH LOGIN dXNlcg==).
	ls = &loginServer{callback: func(u, p string) error { user, pass = u, p; return nil }}
	if c, _, err := ls.Next([]byte("ir")); err != nil || string(c) != "Password:" {
		t.Fatalf("with initial response: %q %v", c, err)
	}
	if _, done, err := ls.Next([]byte("pw2")); !done || err != nil || user != "ir" || pass != "pw2" {
		t.Fatalf("with initial response: %q %q %v", user, pass, err)
	}
}

// A full queue is a temporary refusal the client can read, not the
// generic 451 of a queue that is away.
func TestFullQueueReply(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  *intake.FullError
		want string
	}{
		{&intake.FullError{Err: queue.ErrRouteFull}, "the route's queue is full"},
		{&intake.FullError{App: true, Err: queue.ErrAppFull}, "this app's share"},
	} {
		r := fullReply(tc.err)
		if r.Code != 452 || r.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) || !strings.Contains(r.Message, tc.want) {
			t.Errorf("%v: %d %v %q", tc.err, r.Code, r.EnhancedCode, r.Message)
		}
	}
}
