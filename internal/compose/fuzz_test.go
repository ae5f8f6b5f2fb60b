package compose

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// The seed corpora live in testdata/fuzz/<FuzzName>/ and run as ordinary
// tests; `go test -fuzz FuzzParseRaw ./internal/compose` explores further.

func FuzzParseAddress(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeValidationFailed {
				t.Fatalf("error %v (%T) is not a validation_failed *Error", err, err)
			}
			return
		}
		for i := 0; i < len(a.Address); i++ {
			if a.Address[i] >= utf8.RuneSelf || a.Address[i] <= ' ' {
				t.Fatalf("address %q has a byte 0x%02x", a.Address, a.Address[i])
			}
		}
		if controlChar(a.Name) != "" || !utf8.ValidString(a.Name) {
			t.Fatalf("display name %q has control characters or invalid UTF-8", a.Name)
		}
		// Every form mailgate writes or shows must parse back the same.
		for _, form := range []string{a.Address, a.String(), displayAddress(a)} {
			if controlChar(form) != "" {
				t.Fatalf("%q formats with a control character as %q", s, form)
			}
			b, err := ParseAddress(form)
			if err != nil {
				t.Fatalf("%q formatted as %q does not parse: %v", s, form, err)
			}
			if b.Address != a.Address || (form != a.Address && b.Name != a.Name) {
				t.Fatalf("%q formatted as %q parses as %q <%s>, want %q <%s>", s, form, b.Name, b.Address, a.Name, a.Address)
			}
		}
	})
}

func FuzzParseRaw(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte) {
		opt := testOptions()
		opt.DefaultFrom = "Default <default@contoso.com>"
		msg, err := ParseRaw(raw, opt)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			return
		}
		checkOutput(t, msg)

		// The output is accepted again and left as it is.
		opt.EnvelopeTo = msg.Recipients
		again, err := ParseRaw(msg.Bytes, opt)
		if err != nil {
			t.Fatalf("output refused: %v\n%q", err, msg.Bytes)
		}
		if !bytes.Equal(again.Bytes, msg.Bytes) {
			t.Fatalf("second pass changed\n%q\ninto\n%q", msg.Bytes, again.Bytes)
		}
	})
}

// fuzzInput is Input as the JSON API spells it.
type fuzzInput struct {
	From        string            `json:"from"`
	To          []string          `json:"to"`
	Cc          []string          `json:"cc"`
	Bcc         []string          `json:"bcc"`
	ReplyTo     string            `json:"reply_to"`
	Subject     string            `json:"subject"`
	Text        string            `json:"text"`
	HTML        string            `json:"html"`
	Headers     map[string]string `json:"headers"`
	Attachments []struct {
		Filename    string `json:"filename"`
		ContentType string `json:"content_type"`
		Content     []byte `json:"content"`
		ContentID   string `json:"content_id"`
	} `json:"attachments"`
}

func FuzzBuild(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var fi fuzzInput
		if json.Unmarshal(data, &fi) != nil {
			return
		}
		in := Input{
			From: fi.From, To: fi.To, Cc: fi.Cc, Bcc: fi.Bcc, ReplyTo: fi.ReplyTo,
			Subject: fi.Subject, Text: fi.Text, HTML: fi.HTML, Headers: fi.Headers,
		}
		for _, a := range fi.Attachments {
			in.Attachments = append(in.Attachments, Attachment{
				Filename: a.Filename, ContentType: a.ContentType, Content: a.Content, ContentID: a.ContentID,
			})
		}
		msg, err := Build(in, testOptions())
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			return
		}
		checkOutput(t, msg)
		if err := checkLines(msg.Bytes); err != nil {
			t.Fatalf("%v:\n%q", err, msg.Bytes)
		}
		// What Build renders, the raw endpoint accepts: one set of rules.
		if _, err := ParseRaw(msg.Bytes, Options{EnvelopeTo: msg.Recipients, MessageIDLocal: "x"}); err != nil {
			t.Fatalf("ParseRaw refuses Build's output: %v\n%q", err, msg.Bytes)
		}

		// Rendered in the attachments' own arrays (Owned, with room), the
		// message is the same size and reads back the same.
		if len(in.Attachments) > 0 {
			owned := in
			owned.Attachments = make([]Attachment, len(in.Attachments))
			for i, a := range in.Attachments {
				a.Content = append(make([]byte, 0, len(msg.Bytes)+len(a.Content)), a.Content...)
				a.Owned = true
				owned.Attachments[i] = a
			}
			again, err := Build(owned, testOptions())
			if err != nil {
				t.Fatalf("owned attachments refused: %v", err)
			}
			if len(again.Bytes) != len(msg.Bytes) {
				t.Fatalf("owned: %d bytes, not %d", len(again.Bytes), len(msg.Bytes))
			}
			want, got := leaves(parseMessage(t, msg.Bytes)), leaves(parseMessage(t, again.Bytes))
			for i := range want {
				if len(got) != len(want) || !bytes.Equal(want[i], got[i]) {
					t.Fatalf("owned: part %d reads back as %q, not %q", i, got[i], want[i])
				}
			}
		}
	})
}

// checkOutput asserts what holds for every Message: it parses, has no Bcc
// and no CR or LF inside a header value, uses CRLF only, and has envelope
// recipients that are bare valid addresses.
func checkOutput(t *testing.T, msg *Message) {
	t.Helper()
	checkHeaderInvariants(t, msg.Bytes)
	for i, c := range msg.Bytes {
		if c == '\n' && (i == 0 || msg.Bytes[i-1] != '\r') || c == '\r' && (i+1 == len(msg.Bytes) || msg.Bytes[i+1] != '\n') {
			t.Fatalf("bare CR or LF at %d in\n%q", i, msg.Bytes)
		}
	}
	if len(msg.Recipients) == 0 {
		t.Fatal("no recipients")
	}
	for _, r := range msg.Recipients {
		a, err := ParseAddress(r)
		if err != nil || a.Address != r || a.Name != "" {
			t.Fatalf("recipient %q is not a bare address: %v", r, err)
		}
	}
	if msg.From == nil || msg.MessageID == "" {
		t.Fatalf("From = %v, MessageID = %q", msg.From, msg.MessageID)
	}
}

// leaves returns the decoded bodies of n's leaf parts, in order.
func leaves(n *node) [][]byte {
	if len(n.parts) == 0 {
		return [][]byte{n.body}
	}
	var out [][]byte
	for _, p := range n.parts {
		out = append(out, leaves(p)...)
	}
	return out
}
