package compose

import (
	"bytes"
	"reflect"
	"testing"
)

// Every header that names a sender reaches the policy through Senders, on
// both paths.
func TestSenders(t *testing.T) {
	t.Parallel()
	msg, err := ParseRaw([]byte("From: A <a@contoso.com>\r\nSender: s@Contoso.com\r\n"+
		"Resent-From: r1@contoso.com, R2 <r2@contoso.com>\r\nResent-Sender: rs@contoso.com\r\n"+
		"To: b@contoso.com\r\n\r\nx\r\n"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := []Sender{{"from", "a@contoso.com"}, {"headers.Sender", "s@contoso.com"},
		{"headers.Resent-Sender", "rs@contoso.com"},
		{"headers.Resent-From", "r1@contoso.com"}, {"headers.Resent-From", "r2@contoso.com"}}
	if !reflect.DeepEqual(msg.Senders, want) {
		t.Errorf("raw Senders = %v, want %v", msg.Senders, want)
	}
	built, err := Build(Input{From: "a@contoso.com", To: []string{"b@contoso.com"}, Text: "x"}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if want := []Sender{{"from", "a@contoso.com"}}; !reflect.DeepEqual(built.Senders, want) {
		t.Errorf("built Senders = %v, want %v", built.Senders, want)
	}
}

func TestRawSenderHeadersRefused(t *testing.T) {
	t.Parallel()
	const head = "From: a@contoso.com\r\nTo: b@contoso.com\r\n"
	for name, tt := range map[string]struct{ raw, field string }{
		"two Sender fields":        {head + "Sender: s@contoso.com\r\nSender: t@contoso.com\r\n\r\nx\r\n", "headers.Sender"},
		"Sender list":              {head + "Sender: s@contoso.com, t@contoso.com\r\n\r\nx\r\n", "headers.Sender"},
		"Sender faking a name":     {head + "Sender: \"ceo@contoso.com\" <s@contoso.com>\r\n\r\nx\r\n", "headers.Sender"},
		"Resent-From faking":       {head + "Resent-From: =?utf-7?q?ceo+AEA-contoso.com?= <s@contoso.com>\r\n\r\nx\r\n", "headers.Resent-From"},
		"Resent-Sender bad":        {head + "Resent-Sender: nobody\r\n\r\nx\r\n", "headers.Resent-Sender"},
		"Resent-From empty":        {head + "Resent-From: \r\n\r\nx\r\n", "headers.Resent-From"},
		"From with full-width at":  {"From: ceo\uff20contoso.com <a@contoso.com>\r\nTo: b@contoso.com\r\n\r\nx\r\n", "headers.From"},
		"From UTF-16 encoded name": {"From: =?utf-16be?b?AGMAZQBvAEAAYw==?= <a@contoso.com>\r\nTo: b@contoso.com\r\n\r\nx\r\n", "headers.From"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			msg, err := ParseRaw([]byte(tt.raw), testOptions())
			if err == nil {
				t.Fatalf("accepted:\n%s", msg.Bytes)
			}
			wantError(t, err, CodeValidationFailed, tt.field)
		})
	}
}

// Trace fields are removed from a raw message rather than refused; the
// JSON path refuses them in headers (TestBuildRefuses).
func TestRawTraceHeadersRemoved(t *testing.T) {
	t.Parallel()
	msg, err := ParseRaw([]byte("Return-Path: <x@elsewhere.example>\r\nReceived: from a by b; Tue, 1 Dec 2026 10:00:00 +0000\r\n"+
		"Received: from c\r\n by d; Tue, 1 Dec 2026 09:00:00 +0000\r\nDKIM-Signature: v=1; d=elsewhere.example; b=AAAA\r\n"+
		"From: a@contoso.com\r\nTo: b@contoso.com\r\nX-Keep: yes\r\n\r\nx\r\n"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := bytes.Cut(msg.Bytes, []byte("\r\n\r\n"))
	for _, name := range []string{"Return-Path", "Received", "DKIM-Signature"} {
		if bytes.Contains(bytes.ToLower(head), bytes.ToLower([]byte(name+":"))) {
			t.Errorf("%s kept:\n%s", name, head)
		}
	}
	if !bytes.Contains(head, []byte("X-Keep: yes")) {
		t.Errorf("an ordinary header was removed:\n%s", head)
	}
	checkHeaderInvariants(t, msg.Bytes)
}
