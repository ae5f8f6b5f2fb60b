package api

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/mailgate/mailgate/internal/compose"
)

// FuzzParseJSONToMIME drives the whole JSON path of POST /v1/messages —
// decoding, address lists, base64 attachments, metadata, then rendering —
// with arbitrary bodies. Whatever comes in, the answer is a Problem or a
// message that parses back, has no Bcc header and no bare CR or LF in a
// header; it never panics.
func FuzzParseJSONToMIME(f *testing.F) {
	for _, seed := range []string{
		`{"from":"a@contoso.com","to":"b@contoso.com","subject":"s","text":"t"}`,
		`{"from":"A <a@contoso.com>","to":["b@contoso.com","C <c@contoso.com>"],"bcc":"d@contoso.com","html":"<p>x</p>","text":"x"}`,
		`{"from":"a@contoso.com","to":"b@contoso.com, c@contoso.com","text":"x","headers":{"X-Ticket":"1"},"metadata":{"k":"v"}}`,
		`{"from":"a@contoso.com","to":"b@contoso.com","html":"<img src=cid:logo>","attachments":[{"filename":"l.png","content":"iVBORw0KGgo=","content_id":"logo"}]}`,
		`{"from":"a@contoso.com","to":"b@contoso.com","text":"x","subject":"hi\r\nBcc: e@x.com"}`,
		`{"to":1}`, `[]`, `{"text":"\u00e9\u2603"}`, `{"attachments":[{"content":"@@"}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sub, err := parseJSON(bytes.NewReader(body), int64(len(body)))
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) || p.Status != 400 && p.Status != 422 {
				t.Fatalf("parseJSON error is not a 400/422 problem: %v", err)
			}
			return
		}
		if sub.in.From == "" {
			sub.in.From = "default@contoso.com"
		}
		msg, err := compose.Build(sub.in, compose.Options{Now: time.Unix(1795000000, 0), MessageIDLocal: "fuzz"})
		if err != nil {
			var ce *compose.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Build error is not a compose.Error: %v", err)
			}
			return
		}
		head, _, ok := bytes.Cut(msg.Bytes, []byte("\r\n\r\n"))
		if !ok {
			t.Fatalf("no header/body separator:\n%q", msg.Bytes)
		}
		for _, line := range strings.Split(string(head), "\r\n") {
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("bare CR or LF in a header line %q", line)
			}
			if strings.HasPrefix(strings.ToLower(line), "bcc:") {
				t.Fatalf("Bcc header in the output:\n%s", head)
			}
		}
		if _, err := mail.CreateReader(bytes.NewReader(msg.Bytes)); err != nil {
			t.Fatalf("output does not parse: %v\n%q", err, msg.Bytes)
		}
	})
}
