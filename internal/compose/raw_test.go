package compose

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// crlf writes test messages readably: every "\n" becomes "\r\n".
func crlf(s string) []byte {
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

// bodyOf returns what follows the first blank line.
func bodyOf(t *testing.T, b []byte) []byte {
	t.Helper()
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatalf("no blank line in\n%s", b)
	}
	return b[i+4:]
}

const rawMultipart = `From: "Alerts" <alerts@alerts.contoso.com>
To: ops@contoso.com, "Doe, Jane" <jane@Contoso.com>
Cc: undisclosed-recipients:;
Bcc: Auditor <audit@contoso.com>,
 second@contoso.com
Subject: =?iso-8859-1?q?Pr=FCfung?=
Message-ID: <keep-me@client.example>
Date: Tue, 01 Apr 2025 10:00:00 +0200
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is the preamble.
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=x-unknown-charset
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe, a soft=
 break.
--inner
Content-Type: text/html; charset=utf-8

<p>Grüße</p>
--inner--
--outer
Content-Type: application/octet-stream; name="a.bin"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="a.bin"

AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v
MDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5f
--outer
Content-Type: application/x-thing
Content-Transfer-Encoding: x-uuencode

begin 644 whatever
--outer--
epilogue
`

func TestParseRawValid(t *testing.T) {
	t.Parallel()
	in := crlf(rawMultipart)
	msg, err := ParseRaw(in, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	checkHeaderInvariants(t, msg.Bytes)
	if !bytes.Equal(bodyOf(t, msg.Bytes), bodyOf(t, in)) {
		t.Errorf("body changed:\n%s", bodyOf(t, msg.Bytes))
	}
	root := parseMessage(t, msg.Bytes)
	if got := root.shape(); got != "multipart/mixed[multipart/alternative[text/plain,text/html],application/octet-stream,application/x-thing]" {
		t.Errorf("shape = %s", got)
	}
	h := mailHeader(root)
	if id, err := h.MessageID(); err != nil || id != "keep-me@client.example" || msg.MessageID != id {
		t.Errorf("Message-ID = %q, %v, Message.MessageID = %q", id, err, msg.MessageID)
	}
	if !msg.OwnMessageID {
		t.Error("OwnMessageID = false for a message that brought its Message-ID")
	}
	if got := h.Get("Date"); got != "Tue, 01 Apr 2025 10:00:00 +0200" {
		t.Errorf("Date = %q", got)
	}
	if n := len(h.Values("Message-Id")); n != 1 {
		t.Errorf("%d Message-ID fields", n)
	}
	if want := []string{"ops@contoso.com", "jane@contoso.com", "audit@contoso.com", "second@contoso.com"}; !slices.Equal(msg.Recipients, want) {
		t.Errorf("Recipients = %q, want %q", msg.Recipients, want)
	}
	if want := []string{"ops@contoso.com", `"Doe, Jane" <jane@contoso.com>`}; !slices.Equal(msg.To, want) {
		t.Errorf("To = %q, want %q", msg.To, want)
	}
	if msg.Subject != "Prüfung" {
		t.Errorf("Subject = %q", msg.Subject)
	}
	if msg.From.Address != "alerts@alerts.contoso.com" || msg.From.Name != "Alerts" {
		t.Errorf("From = %v", msg.From)
	}
	if bytes.Contains(msg.Bytes, []byte("audit@")) || bytes.Contains(msg.Bytes, []byte("second@")) {
		t.Error("Bcc addresses leak into the message")
	}
	// The rest of the header is kept as it was, folding included.
	for _, line := range []string{"To: ops@contoso.com, \"Doe, Jane\" <jane@Contoso.com>\r\n", "Cc: undisclosed-recipients:;\r\n", "Subject: =?iso-8859-1?q?Pr=FCfung?=\r\n"} {
		if !bytes.Contains(msg.Bytes, []byte(line)) {
			t.Errorf("header line %q not kept", line)
		}
	}

	// What ParseRaw produces, it accepts again unchanged.
	again, err := ParseRaw(msg.Bytes, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes, msg.Bytes) {
		t.Errorf("second pass changed the message:\n%s", again.Bytes)
	}
}

func TestParseRawAddsMissingFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		raw       string
		opt       func(o *Options)
		wantFrom  string
		wantID    string
		wantDate  string
		wantRcpts []string
	}{
		{
			name:      "Message-ID, Date and MIME-Version added",
			raw:       "From: a@Contoso.com\nTo: b@contoso.com\nSubject: hi\n\nhello\n",
			wantFrom:  "a@contoso.com",
			wantID:    "01J9ZQ4.test@contoso.com",
			wantDate:  testNow.Format("Mon, 02 Jan 2006 15:04:05 -0700"),
			wantRcpts: []string{"b@contoso.com"},
		},
		{
			name:      "existing kept",
			raw:       "Message-Id: <x@y.example>\nDate: Wed, 02 Apr 2025 08:00:00 +0000\nFrom: a@contoso.com\nTo: b@contoso.com\n\nhello\n",
			wantFrom:  "a@contoso.com",
			wantID:    "x@y.example",
			wantDate:  "Wed, 02 Apr 2025 08:00:00 +0000",
			wantRcpts: []string{"b@contoso.com"},
		},
		{
			name:      "empty Date and Message-ID replaced",
			raw:       "Message-ID:\nDate: \nFrom: a@contoso.com\nTo: b@contoso.com\n\nhello\n",
			wantFrom:  "a@contoso.com",
			wantID:    "01J9ZQ4.test@contoso.com",
			wantDate:  testNow.Format("Mon, 02 Jan 2006 15:04:05 -0700"),
			wantRcpts: []string{"b@contoso.com"},
		},
		{
			name:      "default From inserted",
			raw:       "To: b@contoso.com\n\nhello\n",
			opt:       func(o *Options) { o.DefaultFrom = "Jörg Müller <joerg@alerts.contoso.com>" },
			wantFrom:  "joerg@alerts.contoso.com",
			wantID:    "01J9ZQ4.test@alerts.contoso.com",
			wantDate:  testNow.Format("Mon, 02 Jan 2006 15:04:05 -0700"),
			wantRcpts: []string{"b@contoso.com"},
		},
		{
			name:      "envelope recipients replace the header's",
			raw:       "From: a@contoso.com\nTo: b@contoso.com\nBcc: c@contoso.com\n\nhello\n",
			opt:       func(o *Options) { o.EnvelopeTo = []string{"X@Fabrikam.com", "x@fabrikam.com"} },
			wantFrom:  "a@contoso.com",
			wantID:    "01J9ZQ4.test@contoso.com",
			wantDate:  testNow.Format("Mon, 02 Jan 2006 15:04:05 -0700"),
			wantRcpts: []string{"X@fabrikam.com", "x@fabrikam.com"},
		},
		{
			name:      "bare LF and bare CR normalised, empty body",
			raw:       "From: a@contoso.com\rTo: b@contoso.com\n\n",
			wantFrom:  "a@contoso.com",
			wantID:    "01J9ZQ4.test@contoso.com",
			wantDate:  testNow.Format("Mon, 02 Jan 2006 15:04:05 -0700"),
			wantRcpts: []string{"b@contoso.com"},
		},
		{
			name:      "body without final line break",
			raw:       "From: a@contoso.com\r\nTo: b@contoso.com\r\n\r\nno newline",
			wantFrom:  "a@contoso.com",
			wantID:    "01J9ZQ4.test@contoso.com",
			wantDate:  testNow.Format("Mon, 02 Jan 2006 15:04:05 -0700"),
			wantRcpts: []string{"b@contoso.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opt := testOptions()
			if tt.opt != nil {
				tt.opt(&opt)
			}
			msg, err := ParseRaw([]byte(tt.raw), opt)
			if err != nil {
				t.Fatal(err)
			}
			checkHeaderInvariants(t, msg.Bytes)
			if err := checkLines(msg.Bytes); err != nil {
				t.Errorf("%v in\n%q", err, msg.Bytes)
			}
			h := mailHeader(parseMessage(t, msg.Bytes))
			from, err := h.AddressList("From")
			if err != nil || len(from) != 1 || !strings.EqualFold(from[0].Address, tt.wantFrom) || msg.From.Address != tt.wantFrom {
				t.Errorf("From = %v, %v; Message.From = %v", from, err, msg.From)
			}
			if id, err := h.MessageID(); err != nil || id != tt.wantID || msg.MessageID != tt.wantID {
				t.Errorf("Message-ID = %q, %v, Message.MessageID = %q, want %q", id, err, msg.MessageID, tt.wantID)
			}
			// The ids mailgate adds are built from MessageIDLocal.
			if added := strings.HasPrefix(tt.wantID, "01J9ZQ4.test@"); msg.OwnMessageID == added {
				t.Errorf("OwnMessageID = %v for Message-ID %s", msg.OwnMessageID, tt.wantID)
			}
			if got := h.Get("Date"); got != tt.wantDate {
				t.Errorf("Date = %q, want %q", got, tt.wantDate)
			}
			if got := h.Get("Mime-Version"); got != "1.0" {
				t.Errorf("MIME-Version = %q", got)
			}
			if !slices.Equal(msg.Recipients, tt.wantRcpts) {
				t.Errorf("Recipients = %q, want %q", msg.Recipients, tt.wantRcpts)
			}
		})
	}
}

func TestParseRawNormalisesLineEndings(t *testing.T) {
	t.Parallel()
	in := "From: a@contoso.com\nTo: b@contoso.com\n\nline one\nline two\r\nline three\n"
	msg, err := ParseRaw([]byte(in), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(bodyOf(t, msg.Bytes)); got != "line one\r\nline two\r\nline three\r\n" {
		t.Errorf("body = %q", got)
	}
}

func TestParseRawKeepsUnchangedInput(t *testing.T) {
	t.Parallel()
	// A message with nothing to add comes out byte for byte, Bcc aside.
	in := crlf("From: a@contoso.com\nTo: b@contoso.com\nBcc: c@contoso.com\nResent-Bcc: d@contoso.com\nMessage-ID: <1@contoso.com>\nDate: Wed, 02 Apr 2025 08:00:00 +0000\nMIME-Version: 1.0\nX-Long: a\n  folded\tvalue\n\nbody\n")
	msg, err := ParseRaw(in, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Replace(in, []byte("Bcc: c@contoso.com\r\nResent-Bcc: d@contoso.com\r\n"), nil, 1)
	if !bytes.Equal(msg.Bytes, want) {
		t.Errorf("got\n%q\nwant\n%q", msg.Bytes, want)
	}
}

func nested(depth int) string {
	var b strings.Builder
	b.WriteString("From: a@contoso.com\nTo: b@contoso.com\nContent-Type: multipart/mixed; boundary=b0\n\n")
	for i := 1; i < depth; i++ {
		fmt.Fprintf(&b, "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", i-1, i)
	}
	fmt.Fprintf(&b, "--b%d\nContent-Type: text/plain\n\nleaf\n", depth-1)
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\n", i)
	}
	return b.String()
}

func TestParseRawNesting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		depth, max int
		ok         bool
	}{
		{depth: 20, max: 0, ok: true},
		{depth: 21, max: 0, ok: false},
		{depth: 3, max: 3, ok: true},
		{depth: 4, max: 3, ok: false},
		{depth: 100, max: 0, ok: false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d levels max %d", tt.depth, tt.max), func(t *testing.T) {
			t.Parallel()
			opt := testOptions()
			opt.MaxNesting = tt.max
			msg, err := ParseRaw([]byte(nested(tt.depth)), opt)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if got := parseMessage(t, msg.Bytes).find("text/plain"); got == nil || lf(got.body) != "leaf" {
					t.Errorf("leaf = %v", got)
				}
				return
			}
			wantError(t, err, CodeInvalidBody, "")
		})
	}
}

func TestParseRawRejects(t *testing.T) {
	t.Parallel()
	const head = "From: a@contoso.com\nTo: b@contoso.com\n"
	tests := []struct {
		name  string
		raw   string
		opt   func(o *Options)
		code  string
		field string
	}{
		{"empty", "", nil, CodeInvalidBody, ""},
		{"header only, no blank line", head, nil, CodeInvalidBody, ""},
		{"header cut in the middle", "From: a@contoso.com\nTo: b@con", nil, CodeInvalidBody, ""},
		{"body line taken for header", "From: a@contoso.com\nTo: b@contoso.com\nHello world\n", nil, CodeInvalidBody, ""},
		{"line with empty field name", head + ": sneaky\n\nbody\n", nil, CodeInvalidBody, ""},
		{"field name with space", head + "X Bad: 1\n\nbody\n", nil, CodeInvalidBody, ""},
		{"starts with continuation line", " folded\n" + head + "\nbody\n", nil, CodeInvalidBody, ""},
		{"header line over 998 bytes", head + "Subject: " + strings.Repeat("x", 990) + "\n\nbody\n", nil, CodeInvalidBody, "headers.Subject"},
		{"folded header line over 998 bytes", head + "Subject: a\n " + strings.Repeat("x", 998) + "\n\nbody\n", nil, CodeInvalidBody, "headers.Subject"},
		{"whitespace-only folded line", head + "Subject: a\n \nX-B: b\n\nbody\n", nil, CodeInvalidBody, "headers.Subject"},
		{"NUL in header", head + "X-A: a\x00b\n\nbody\n", nil, CodeInvalidBody, "headers.X-A"},
		{"multipart without boundary", head + "Content-Type: multipart/mixed\n\n--x\n\nhi\n--x--\n", nil, CodeInvalidBody, ""},
		{"multipart with empty boundary", head + "Content-Type: multipart/mixed; boundary=\"\"\n\nhi\n", nil, CodeInvalidBody, ""},
		{"unparseable Content-Type", head + "Content-Type: multipart/mixed; boundary=\"x\"; boundary=\"y\"\n\n--x\n\nhi\n--x--\n", nil, CodeInvalidBody, ""},
		{"unterminated multipart", head + "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nhi\n", nil, CodeInvalidBody, ""},
		{"multipart never starts", head + "Content-Type: multipart/mixed; boundary=x\n\njust text\n", nil, CodeInvalidBody, ""},
		{"multipart with no parts", head + "Content-Type: multipart/mixed; boundary=x\n\n--x--\n", nil, CodeInvalidBody, ""},
		{"truncated nested multipart", head + "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: multipart/alternative; boundary=y\n\n--y\n\nhi\n--x--\n", nil, CodeInvalidBody, ""},
		{"part header not terminated", head + "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n--x--\n", nil, CodeInvalidBody, ""},
		{"part header line too long", head + "Content-Type: multipart/mixed; boundary=x\n\n--x\nX-Long: " + strings.Repeat("y", 1000) + "\n\nhi\n--x--\n", nil, CodeInvalidBody, ""},
		{"invalid base64", head + "Content-Transfer-Encoding: base64\n\nAAEC!!!!\n", nil, CodeInvalidBody, ""},
		{"truncated base64", head + "Content-Transfer-Encoding: base64\n\nAAECA\n", nil, CodeInvalidBody, ""},
		{"invalid base64 in part", head + "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Transfer-Encoding: BASE64\n\n%%%%\n--x--\n", nil, CodeInvalidBody, ""},
		// Go's decoder takes "=ZZ" as a literal, as RFC 2045 section 6.7
		// suggests, but refuses unencoded control characters.
		{"invalid quoted-printable", head + "Content-Transfer-Encoding: quoted-printable\n\nbad \x01 byte\n", nil, CodeInvalidBody, ""},
		{"two From fields", "From: a@contoso.com\nFrom: c@contoso.com\nTo: b@contoso.com\n\nx\n", nil, CodeValidationFailed, "headers.From"},
		{"two From mailboxes", "From: a@contoso.com, c@contoso.com\nTo: b@contoso.com\n\nx\n", nil, CodeValidationFailed, "headers.From"},
		{"From group", "From: Team: a@contoso.com;\nTo: b@contoso.com\n\nx\n", nil, CodeValidationFailed, "headers.From"},
		{"From empty", "From: \nTo: b@contoso.com\n\nx\n", nil, CodeValidationFailed, "headers.From"},
		{"From spoofing display name", "From: \"ceo@contoso.com\" <evil@evil.example>\nTo: b@contoso.com\n\nx\n", nil, CodeValidationFailed, "headers.From"},
		{"From IP literal", "From: a@[192.0.2.1]\nTo: b@contoso.com\n\nx\n", nil, CodeValidationFailed, "headers.From"},
		{"no From and no default", "To: b@contoso.com\n\nx\n", nil, CodeValidationFailed, "headers.From"},
		{"bad default From", "To: b@contoso.com\n\nx\n", func(o *Options) { o.DefaultFrom = "nope" }, CodeValidationFailed, "from"},
		{"bad To", "From: a@contoso.com\nTo: b@localhost\n\nx\n", nil, CodeValidationFailed, "headers.To"},
		{"unparseable Cc", "From: a@contoso.com\nTo: b@contoso.com\nCc: <<<\n\nx\n", nil, CodeValidationFailed, "headers.Cc"},
		{"no recipients", "From: a@contoso.com\nSubject: x\n\nx\n", nil, CodeValidationFailed, "to"},
		{"only an empty group", "From: a@contoso.com\nTo: undisclosed-recipients:;\n\nx\n", nil, CodeValidationFailed, "to"},
		{"bad envelope recipient", head + "\nx\n", func(o *Options) { o.EnvelopeTo = []string{"ok@contoso.com", "x\r\n@y.example"} }, CodeValidationFailed, "to[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opt := testOptions()
			if tt.opt != nil {
				tt.opt(&opt)
			}
			msg, err := ParseRaw([]byte(tt.raw), opt)
			if err == nil {
				t.Fatalf("accepted:\n%s", msg.Bytes)
			}
			wantError(t, err, tt.code, tt.field)
		})
	}
}

func TestParseRawAccepts(t *testing.T) {
	t.Parallel()
	const head = "From: a@contoso.com\nTo: b@contoso.com\n"
	tests := []struct {
		name string
		raw  string
	}{
		{"unknown charset", head + "Content-Type: text/plain; charset=x-klingon\n\nqapla'\n"},
		{"unknown transfer encoding", head + "Content-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n"},
		{"unknown charset in names", "From: =?x-unknown?q?J=F6rg?= <a@contoso.com>\nTo: =?iso-2022-jp?B?GyRCJUYlOSVIGyhC?= <b@contoso.com>\n\nx\n"},
		{"8-bit UTF-8 header", "From: Jörg <a@contoso.com>\nTo: b@contoso.com\nSubject: Grüße\n\nx\n"},
		{"display name equal to the address", "From: \"a@contoso.com\" <a@contoso.com>\nTo: b@contoso.com\n\nx\n"},
		{"long body line", head + "\n" + strings.Repeat("z", 5000) + "\n"},
		{"obsolete space before colon", "From : a@contoso.com\nTo: b@contoso.com\n\nx\n"},
		{"base64 with spaces and short lines", head + "Content-Transfer-Encoding: base64\n\nAAEC AwQF\nBgc=\n"},
		{"message/rfc822 part not walked", head + "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: message/rfc822\n\nnot even a header\n--x--\n"},
		{"text without MIME", head + "\nplain old RFC 822\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg, err := ParseRaw([]byte(tt.raw), testOptions())
			if err != nil {
				t.Fatal(err)
			}
			checkHeaderInvariants(t, msg.Bytes)
		})
	}
}
