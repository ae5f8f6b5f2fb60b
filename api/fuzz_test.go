package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
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
		// The attachments decode as encoding/json decodes base64 into a
		// []byte, although they are decoded over the body.
		var std struct {
			Attachments []struct{ Content []byte }
		}
		if err := json.Unmarshal(body, &std); err != nil || len(std.Attachments) != len(sub.in.Attachments) {
			t.Fatalf("accepted, but encoding/json reads %d attachments (%v), not %d", len(std.Attachments), err, len(sub.in.Attachments))
		}
		for i, a := range std.Attachments {
			if !bytes.Equal(a.Content, sub.in.Attachments[i].Content) {
				t.Fatalf("attachment %d decodes as %q, not %q", i, sub.in.Attachments[i].Content, a.Content)
			}
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
		r, err := mail.CreateReader(bytes.NewReader(msg.Bytes))
		if err != nil {
			t.Fatalf("output does not parse: %v\n%q", err, msg.Bytes)
		}
		// Every attachment reads back from the message, the last one too
		// (which may have been rendered over itself).
		var parts [][]byte
		for {
			p, err := r.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("output part does not parse: %v\n%q", err, msg.Bytes)
			}
			b, err := io.ReadAll(p.Body)
			if err != nil {
				t.Fatalf("output part does not read: %v\n%q", err, msg.Bytes)
			}
			parts = append(parts, b)
		}
		for i, a := range std.Attachments {
			if !slices.ContainsFunc(parts, func(p []byte) bool { return bytes.Equal(p, a.Content) }) {
				t.Fatalf("attachment %d (%q) is not in the message:\n%q", i, a.Content, msg.Bytes)
			}
		}
	})
}
