package compose

import (
	"bytes"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	gmail "github.com/emersion/go-message/mail"
)

var testNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.FixedZone("CET", 3600))

func testOptions() Options {
	return Options{Now: testNow, MessageIDLocal: "01J9ZQ4.test"}
}

func TestBuildStructure(t *testing.T) {
	t.Parallel()

	pdf := make([]byte, 100_000)
	rand.Read(pdf)
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0, 1, 2, 255}, 300)...)

	tests := []struct {
		name  string
		in    Input
		shape string
		check func(t *testing.T, root *node)
	}{
		{
			name:  "text only",
			in:    Input{Text: "Disk almost full\non /var.\n"},
			shape: "text/plain",
			check: func(t *testing.T, root *node) {
				if root.params["charset"] != "UTF-8" && root.params["charset"] != "utf-8" {
					t.Errorf("charset = %q", root.params["charset"])
				}
				if got := lf(root.body); got != "Disk almost full\non /var.\n" {
					t.Errorf("text = %q", got)
				}
			},
		},
		{
			name:  "html only",
			in:    Input{HTML: "<p>Disk almost full</p>"},
			shape: "text/html",
		},
		{
			name:  "text and html",
			in:    Input{Text: "plain", HTML: "<p>rich – ünïcödé</p>"},
			shape: "multipart/alternative[text/plain,text/html]",
			check: func(t *testing.T, root *node) {
				if got := lf(root.find("text/html").body); got != "<p>rich – ünïcödé</p>" {
					t.Errorf("html = %q", got)
				}
			},
		},
		{
			name: "attachments",
			in: Input{Text: "see attached", Attachments: []Attachment{
				{Filename: "report.pdf", Content: pdf},
				{Filename: "Bericht für März.csv", ContentType: "text/csv", Content: []byte("a,b\r\n1,2\r\n")},
			}},
			shape: "multipart/mixed[text/plain,application/pdf,text/csv]",
			check: func(t *testing.T, root *node) {
				att := root.find("application/pdf")
				if !bytes.Equal(att.body, pdf) {
					t.Errorf("pdf content differs after base64 round trip (%d bytes, want %d)", len(att.body), len(pdf))
				}
				csv := root.find("text/csv")
				if string(csv.body) != "a,b\r\n1,2\r\n" {
					t.Errorf("csv = %q", csv.body)
				}
				name, err := (&gmail.AttachmentHeader{Header: csv.header}).Filename()
				if err != nil || name != "Bericht für März.csv" {
					t.Errorf("filename = %q, %v", name, err)
				}
				disp, _, err := csv.header.ContentDisposition()
				if err != nil || disp != "attachment" {
					t.Errorf("disposition = %q, %v", disp, err)
				}
			},
		},
		{
			name: "inline image next to html",
			in: Input{Text: "plain", HTML: `<img src="cid:logo">`, Attachments: []Attachment{
				{Filename: "logo.png", Content: png, ContentID: "logo"},
				{Filename: "report.pdf", ContentType: "application/pdf", Content: pdf},
			}},
			shape: "multipart/mixed[multipart/related[multipart/alternative[text/plain,text/html],image/png],application/pdf]",
			check: func(t *testing.T, root *node) {
				img := root.find("image/png")
				if got := img.header.Get("Content-Id"); got != "<logo>" {
					t.Errorf("Content-ID = %q", got)
				}
				if disp, _, err := img.header.ContentDisposition(); err != nil || disp != "inline" {
					t.Errorf("disposition = %q, %v", disp, err)
				}
				if !bytes.Equal(img.body, png) {
					t.Error("png content differs")
				}
			},
		},
		{
			name: "inline without html is an attachment",
			in: Input{Text: "plain", Attachments: []Attachment{
				{Filename: "logo.png", Content: png, ContentID: "<logo>"},
			}},
			shape: "multipart/mixed[text/plain,image/png]",
		},
		{
			name: "type sniffed from content",
			in: Input{Text: "x", Attachments: []Attachment{
				{Filename: "noextension", Content: png},
			}},
			shape: "multipart/mixed[text/plain,image/png]",
		},
		{
			name: "message/rfc822 sniffed from .eml becomes octet-stream",
			in: Input{Text: "x", Attachments: []Attachment{
				{Filename: "fwd.eml", Content: []byte("Subject: x\r\n\r\nhi\r\n")},
			}},
			shape: "multipart/mixed[text/plain,application/octet-stream]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.in
			in.From = "Alerts <alerts@alerts.contoso.com>"
			in.To = []string{"ops@contoso.com"}
			msg, err := Build(in, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			checkHeaderInvariants(t, msg.Bytes)
			root := parseMessage(t, msg.Bytes)
			if got := root.shape(); got != tt.shape {
				t.Fatalf("shape = %s, want %s\n%s", got, tt.shape, msg.Bytes)
			}
			if got := root.header.Get("Mime-Version"); got != "1.0" {
				t.Errorf("MIME-Version = %q", got)
			}
			if tt.check != nil {
				tt.check(t, root)
			}
		})
	}
}

func TestBuildHeaders(t *testing.T) {
	t.Parallel()
	in := Input{
		From:    "Jörg Müller <joerg@Alerts.Contoso.com>",
		To:      []string{"ops@contoso.com", "Zoë Ångström <zoe@CONTOSO.com>"},
		Cc:      []string{"\"Doe, Jane\" <jane@contoso.com>"},
		Bcc:     []string{"Secret Auditor <audit@contoso.com>"},
		ReplyTo: "noc@contoso.com",
		Subject: "Plattenplatz fast voll – Überwachung meldet ein Problem auf dem Server mit einem sehr langen Betreff",
		Text:    "hi",
		Headers: map[string]string{
			"X-Ticket":         "4711",
			"In-Reply-To":      "<a@b.example>",
			"References":       "<a@b.example> <c@d.example>",
			"List-Unsubscribe": "<https://contoso.com/unsub?u=1>",
			"Auto-Submitted":   "auto-generated",
			"Precedence":       "bulk",
			"X-Note":           "Grüße",
		},
	}
	msg, err := Build(in, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	checkHeaderInvariants(t, msg.Bytes)
	root := parseMessage(t, msg.Bytes)
	h := mailHeader(root)

	subject, err := h.Subject()
	if err != nil || subject != in.Subject {
		t.Errorf("Subject = %q, %v", subject, err)
	}
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Jörg Müller" || from[0].Address != "joerg@alerts.contoso.com" {
		t.Errorf("From = %v, %v", from, err)
	}
	to, err := h.AddressList("To")
	if err != nil || len(to) != 2 || to[1].Name != "Zoë Ångström" || to[1].Address != "zoe@contoso.com" {
		t.Errorf("To = %v, %v", to, err)
	}
	cc, err := h.AddressList("Cc")
	if err != nil || len(cc) != 1 || cc[0].Name != "Doe, Jane" {
		t.Errorf("Cc = %v, %v", cc, err)
	}
	if rt, err := h.AddressList("Reply-To"); err != nil || len(rt) != 1 || rt[0].Address != "noc@contoso.com" {
		t.Errorf("Reply-To = %v, %v", rt, err)
	}
	if date, err := h.Date(); err != nil || !date.Equal(testNow) {
		t.Errorf("Date = %v, %v", date, err)
	}
	if id, err := h.MessageID(); err != nil || id != "01J9ZQ4.test@alerts.contoso.com" || msg.MessageID != id {
		t.Errorf("Message-ID = %q, %v; Message.MessageID = %q", id, err, msg.MessageID)
	}
	for name, want := range in.Headers {
		got, err := h.Text(name)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, absent := range []string{"Bcc", "User-Agent", "X-Mailer"} {
		if h.Has(absent) {
			t.Errorf("header %s present: %q", absent, h.Get(absent))
		}
	}
	if bytes.Contains(msg.Bytes, []byte("audit@")) || bytes.Contains(msg.Bytes, []byte("Auditor")) {
		t.Error("the Bcc address leaks into the message")
	}

	if want := []string{"ops@contoso.com", "zoe@contoso.com", "jane@contoso.com", "audit@contoso.com"}; !slices.Equal(msg.Recipients, want) {
		t.Errorf("Recipients = %q, want %q", msg.Recipients, want)
	}
	if want := []string{"ops@contoso.com", "Zoë Ångström <zoe@contoso.com>"}; !slices.Equal(msg.To, want) {
		t.Errorf("To = %q, want %q", msg.To, want)
	}
	if want := []string{`"Doe, Jane" <jane@contoso.com>`}; !slices.Equal(msg.Cc, want) {
		t.Errorf("Cc = %q, want %q", msg.Cc, want)
	}
	if msg.Subject != in.Subject || msg.From.Address != "joerg@alerts.contoso.com" {
		t.Errorf("Subject = %q, From = %v", msg.Subject, msg.From)
	}
	// Display forms must themselves be valid input.
	for _, s := range append(msg.To, msg.Cc...) {
		if _, err := ParseAddress(s); err != nil {
			t.Errorf("display form %q does not parse: %v", s, err)
		}
	}
}

func TestBuildRecipientsDeduplicated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		to, cc, bcc []string
		want        []string
	}{
		{
			name: "domain case ignored across to cc bcc",
			to:   []string{"jane@Contoso.com"},
			cc:   []string{"Jane <jane@CONTOSO.COM>"},
			bcc:  []string{"jane@contoso.com", "bob@fabrikam.com"},
			want: []string{"jane@contoso.com", "bob@fabrikam.com"},
		},
		{
			name: "local part case kept",
			to:   []string{"Jane@contoso.com", "jane@contoso.com"},
			want: []string{"Jane@contoso.com", "jane@contoso.com"},
		},
		{
			name: "bcc only",
			bcc:  []string{"a@contoso.com", "a@contoso.com"},
			want: []string{"a@contoso.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg, err := Build(Input{From: "a@contoso.com", To: tt.to, Cc: tt.cc, Bcc: tt.bcc, Text: "x"}, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(msg.Recipients, tt.want) {
				t.Errorf("Recipients = %q, want %q", msg.Recipients, tt.want)
			}
			checkHeaderInvariants(t, msg.Bytes)
		})
	}
}

func TestBuildMessageID(t *testing.T) {
	t.Parallel()
	in := Input{From: "a@contoso.com", To: []string{"b@contoso.com"}, Text: "x"}
	msg, err := Build(in, Options{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(msg.MessageID, "@contoso.com") || len(msg.MessageID) < 20 {
		t.Errorf("random Message-ID = %q", msg.MessageID)
	}
	if _, err := Build(in, Options{MessageIDLocal: "not valid"}); err == nil {
		t.Error("an invalid MessageIDLocal was accepted")
	}
}

func TestBuildValidation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1000)
	tests := []struct {
		name   string
		change func(in *Input)
		field  string
	}{
		{"from missing", func(in *Input) { in.From = "" }, "from"},
		{"from injection", func(in *Input) { in.From = "a@contoso.com\r\nBcc: x@evil.example" }, "from"},
		{"from list", func(in *Input) { in.From = "a@contoso.com, b@contoso.com" }, "from"},
		{"from spoofing display name", func(in *Input) { in.From = `"ceo@contoso.com" <evil@evil.example>` }, "from"},
		{"from encoded spoofing name", func(in *Input) { in.From = `=?utf-8?q?ceo=40contoso.com?= <evil@evil.example>` }, "from"},
		{"from encoded CRLF in name", func(in *Input) { in.From = `=?utf-8?q?a=0D=0ABcc:_x@y.example?= <a@contoso.com>` }, "from"},
		{"to second entry bad", func(in *Input) { in.To = []string{"ok@contoso.com", "not an address"} }, "to[1]"},
		{"to two addresses in one entry", func(in *Input) { in.To = []string{"a@contoso.com, b@contoso.com"} }, "to[0]"},
		{"to group", func(in *Input) { in.To = []string{"Team: a@contoso.com;"} }, "to[0]"},
		{"to angle in name", func(in *Input) { in.To = []string{`"<boss@contoso.com>" <x@contoso.com>`} }, "to[0]"},
		{"to non-ASCII local part", func(in *Input) { in.To = []string{"jörg@contoso.com"} }, "to[0]"},
		{"to non-ASCII domain", func(in *Input) { in.To = []string{"a@bücher.example"} }, "to[0]"},
		{"to domain without dot", func(in *Input) { in.To = []string{"root@localhost"} }, "to[0]"},
		{"to IP literal", func(in *Input) { in.To = []string{"a@[192.0.2.1]"} }, "to[0]"},
		{"to dotted IP", func(in *Input) { in.To = []string{"a@192.0.2.1"} }, "to[0]"},
		{"to quoted local part", func(in *Input) { in.To = []string{`"john doe"@contoso.com`} }, "to[0]"},
		{"to NUL", func(in *Input) { in.To = []string{"a@contoso.com\x00"} }, "to[0]"},
		{"cc bad", func(in *Input) { in.Cc = []string{"a@contoso.com", "b@", "c@contoso.com"} }, "cc[1]"},
		{"bcc injection", func(in *Input) { in.Bcc = []string{"a@contoso.com\nX: y"} }, "bcc[0]"},
		{"reply_to bad", func(in *Input) { in.ReplyTo = "nope" }, "reply_to"},
		{"no recipients", func(in *Input) { in.To = nil }, "to"},
		{"subject CRLF", func(in *Input) { in.Subject = "hi\r\nBcc: x@evil.example" }, "subject"},
		{"subject LF", func(in *Input) { in.Subject = "hi\nthere" }, "subject"},
		{"subject invalid UTF-8", func(in *Input) { in.Subject = "caf\xe9" }, "subject"},
		{"subject control", func(in *Input) { in.Subject = "bell\x07" }, "subject"},
		{"subject word too long", func(in *Input) { in.Subject = long }, "subject"},
		{"no body", func(in *Input) { in.Text, in.HTML = "", "" }, "text"},
		{"text invalid UTF-8", func(in *Input) { in.Text = "\xff" }, "text"},
		{"html invalid UTF-8", func(in *Input) { in.HTML = "<p>\xff</p>" }, "html"},
		{"header Bcc", func(in *Input) { in.Headers = map[string]string{"Bcc": "x@evil.example"} }, "headers.Bcc"},
		{"header from lower case", func(in *Input) { in.Headers = map[string]string{"from": "x@evil.example"} }, "headers.from"},
		{"header Sender", func(in *Input) { in.Headers = map[string]string{"Sender": "x@evil.example"} }, "headers.Sender"},
		{"header Content-Type", func(in *Input) { in.Headers = map[string]string{"Content-Type": "text/html"} }, "headers.Content-Type"},
		{"header content-anything", func(in *Input) { in.Headers = map[string]string{"Content-Foo": "x"} }, "headers.Content-Foo"},
		{"header Resent-From", func(in *Input) { in.Headers = map[string]string{"Resent-From": "x@evil.example"} }, "headers.Resent-From"},
		{"header DKIM-Signature", func(in *Input) { in.Headers = map[string]string{"DKIM-Signature": "v=1"} }, "headers.DKIM-Signature"},
		{"header Received", func(in *Input) { in.Headers = map[string]string{"Received": "from x"} }, "headers.Received"},
		{"header Return-Path", func(in *Input) { in.Headers = map[string]string{"Return-Path": "<x@y.example>"} }, "headers.Return-Path"},
		{"header Message-ID", func(in *Input) { in.Headers = map[string]string{"Message-ID": "<x@y.example>"} }, "headers.Message-ID"},
		{"header MIME-Version", func(in *Input) { in.Headers = map[string]string{"MIME-Version": "1.0"} }, "headers.MIME-Version"},
		{"header Date", func(in *Input) { in.Headers = map[string]string{"Date": "now"} }, "headers.Date"},
		{"header name with space", func(in *Input) { in.Headers = map[string]string{"X Foo": "1"} }, "headers.X Foo"},
		{"header name with colon", func(in *Input) { in.Headers = map[string]string{"X-Foo:": "1"} }, "headers.X-Foo:"},
		{"header name injection", func(in *Input) { in.Headers = map[string]string{"X-A: 1\r\nBcc": "x@y.example"} }, "headers.X-A: 1\r\nBcc"},
		{"header name non-ASCII", func(in *Input) { in.Headers = map[string]string{"X-Grüße": "1"} }, "headers.X-Grüße"},
		{"header name empty", func(in *Input) { in.Headers = map[string]string{"": "1"} }, "headers."},
		{"header value injection", func(in *Input) { in.Headers = map[string]string{"X-Foo": "1\r\nBcc: x@evil.example"} }, "headers.X-Foo"},
		{"header value bare LF", func(in *Input) { in.Headers = map[string]string{"X-Foo": "1\nBcc: x"} }, "headers.X-Foo"},
		{"header value invalid UTF-8", func(in *Input) { in.Headers = map[string]string{"X-Foo": "\xc3\x28"} }, "headers.X-Foo"},
		{"header value too long", func(in *Input) { in.Headers = map[string]string{"X-Foo": long} }, "headers.X-Foo"},
		{"header twice", func(in *Input) { in.Headers = map[string]string{"X-Foo": "1", "x-foo": "2"} }, "headers.x-foo"},
		{"attachment filename CRLF", func(in *Input) { in.Attachments = []Attachment{{Filename: "a\r\n.pdf"}} }, "attachments[0].filename"},
		{"attachment filename missing", func(in *Input) { in.Attachments = []Attachment{{Content: []byte("x")}} }, "attachments[0].filename"},
		{"attachment filename invalid UTF-8", func(in *Input) { in.Attachments = []Attachment{{Filename: "\xff.pdf"}} }, "attachments[0].filename"},
		{"attachment filename too long", func(in *Input) {
			in.Attachments = []Attachment{{Filename: strings.Repeat("r", 252) + ".pdf"}}
		}, "attachments[0].filename"},
		{"attachment filename too long once encoded", func(in *Input) {
			in.Attachments = []Attachment{{Filename: strings.Repeat("ü", 120) + ".pdf", ContentType: "text/plain; x=" + strings.Repeat("y", 150)}}
		}, "attachments[0].filename"},
		{"attachment content_type injection", func(in *Input) {
			in.Attachments = []Attachment{{Filename: "a.txt"}, {Filename: "b.txt", ContentType: "text/plain\r\nBcc: x@y.example"}}
		}, "attachments[1].content_type"},
		{"attachment content_type garbage", func(in *Input) { in.Attachments = []Attachment{{Filename: "a", ContentType: "pdf"}} }, "attachments[0].content_type"},
		{"attachment content_type multipart", func(in *Input) {
			in.Attachments = []Attachment{{Filename: "a", ContentType: "multipart/mixed; boundary=x"}}
		}, "attachments[0].content_type"},
		{"attachment content_id injection", func(in *Input) {
			in.Attachments = []Attachment{{Filename: "a.png", ContentID: "logo>\r\nBcc: x@y.example"}}
		}, "attachments[0].content_id"},
		{"attachment content_id space", func(in *Input) { in.Attachments = []Attachment{{Filename: "a.png", ContentID: "my logo"}} }, "attachments[0].content_id"},
		{"attachment content_id twice", func(in *Input) {
			in.Attachments = []Attachment{{Filename: "a.png", ContentID: "logo"}, {Filename: "b.png", ContentID: "<logo>"}}
		}, "attachments[1].content_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := Input{
				From: "Alerts <alerts@contoso.com>", To: []string{"ops@contoso.com"},
				Subject: "Disk almost full", Text: "x", HTML: "<p>x</p>",
			}
			tt.change(&in)
			msg, err := Build(in, testOptions())
			if err == nil {
				t.Fatalf("accepted:\n%s", msg.Bytes)
			}
			wantError(t, err, CodeValidationFailed, tt.field)
		})
	}
}

func TestBuildAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(in *Input)
	}{
		{"display name equal to the address", func(in *Input) { in.From = `"alerts@contoso.com" <alerts@contoso.com>` }},
		{"long subject with spaces", func(in *Input) { in.Subject = strings.Repeat("word ", 500) + "end" }},
		{"long non-ASCII subject", func(in *Input) { in.Subject = strings.Repeat("ü", 2000) }},
		{"plus and dots in local part", func(in *Input) { in.To = []string{"first.last+tag@sub.contoso.com"} }},
		{"name with comma quoted", func(in *Input) { in.To = []string{`"Doe, Jane" <jane@contoso.com>`} }},
		{"name with colon quoted", func(in *Input) { in.To = []string{`"Re: ops" <ops@contoso.com>`} }},
		{"address with comment", func(in *Input) { in.To = []string{`ops@contoso.com (Ops team)`} }},
		{"filename with path characters", func(in *Input) {
			in.Attachments = []Attachment{{Filename: `../etc/"passwd".txt`, Content: []byte("x")}}
		}},
		{"empty attachment", func(in *Input) { in.Attachments = []Attachment{{Filename: "empty.bin"}} }},
		{"filename from content_id", func(in *Input) { in.Attachments = []Attachment{{ContentID: "logo@contoso.com", Content: []byte("x")}} }},
		{"long filename", func(in *Input) { in.Attachments = []Attachment{{Filename: strings.Repeat("r", 250) + ".pdf"}} }},
		{"long non-ASCII filename", func(in *Input) { in.Attachments = []Attachment{{Filename: strings.Repeat("ü", 60) + ".pdf"}} }},
		{"content type with parameters", func(in *Input) {
			in.Attachments = []Attachment{{Filename: "a.txt", ContentType: `text/plain; charset=iso-8859-1; name="evil.exe"`}}
		}},
		{"NUL and CR in text body", func(in *Input) { in.Text = "a\x00b\rc\r\nd\n" }},
		{"very long text line", func(in *Input) { in.Text = strings.Repeat("y", 5000) }},
		{"header with long value", func(in *Input) {
			in.Headers = map[string]string{"References": strings.Repeat("<0123456789abcdef@contoso.com> ", 60)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := Input{
				From: "Alerts <alerts@contoso.com>", To: []string{"ops@contoso.com"},
				Subject: "Disk almost full", Text: "x", HTML: "<p>x</p>",
			}
			tt.change(&in)
			msg, err := Build(in, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			checkHeaderInvariants(t, msg.Bytes)
			root := parseMessage(t, msg.Bytes)
			if got, err := mailHeader(root).Subject(); err != nil || got != in.Subject {
				t.Errorf("Subject = %q, %v, want %q", got, err, in.Subject)
			}
			if in.Text != "" {
				if got := root.find("text/plain"); got == nil {
					t.Errorf("no text/plain part")
				} else if in.Text == strings.Repeat("y", 5000) && string(got.body) != in.Text {
					t.Errorf("long line changed")
				}
			}
		})
	}
}

func TestBuildSqueezesBlanksInHeaders(t *testing.T) {
	t.Parallel()
	in := Input{
		From: "Alerts   \t Team <alerts@contoso.com>", To: []string{"ops@contoso.com"}, Text: "x",
		Subject: "  a" + strings.Repeat(" ", 300) + "b\t\t" + strings.Repeat("\t", 300),
		Headers: map[string]string{"X-Pad": strings.Repeat(" ", 200) + "v"},
	}
	msg, err := Build(in, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	checkHeaderInvariants(t, msg.Bytes)
	h := mailHeader(parseMessage(t, msg.Bytes))
	if got, err := h.Subject(); err != nil || got != "a b" || msg.Subject != "a b" {
		t.Errorf("Subject = %q, %v, Message.Subject = %q", got, err, msg.Subject)
	}
	if got := h.Get("X-Pad"); got != "v" {
		t.Errorf("X-Pad = %q", got)
	}
	if msg.From.Name != "Alerts Team" {
		t.Errorf("From name = %q", msg.From.Name)
	}
}

// BenchmarkBuildLargeAttachment shows the cost of a 10 MB attachment: the
// output (4/3 of the input, base64) plus go-mail's encoding buffer.
func BenchmarkBuildLargeAttachment(b *testing.B) {
	content := make([]byte, 10<<20)
	rand.Read(content)
	in := Input{
		From: "a@contoso.com", To: []string{"b@contoso.com"}, Text: "x",
		Attachments: []Attachment{{Filename: "big.bin", Content: content}},
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		if _, err := Build(in, testOptions()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRawLarge(b *testing.B) {
	content := make([]byte, 10<<20)
	rand.Read(content)
	msg, err := Build(Input{
		From: "a@contoso.com", To: []string{"b@contoso.com"}, Text: "x",
		Attachments: []Attachment{{Filename: "big.bin", Content: content}},
	}, testOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg.Bytes)))
	for b.Loop() {
		if _, err := ParseRaw(msg.Bytes, testOptions()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildText renders a typical submission: a display-name From,
// one recipient, a subject and about 2 KB of text, as the load generator
// of test/bench sends it.
func BenchmarkBuildText(b *testing.B) {
	in := Input{From: "Bench <bench@example.com>", To: []string{"ops@example.com"}, Subject: "Load test",
		Text: strings.Repeat("Lorem ipsum dolor sit amet. ", 72)[:2000]}
	opt := Options{Now: time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC), MessageIDLocal: "06h34jp0gq5xv9z1txqd87rfq0"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(in, opt); err != nil {
			b.Fatal(err)
		}
	}
}
