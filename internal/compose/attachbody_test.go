package compose

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// attachmentSizes cover the line arithmetic: empty, under, at and over one
// base64 line (57 bytes in), and a remainder of each size modulo 3.
var attachmentSizes = []int{0, 1, 2, 3, 56, 57, 58, 113, 114, 115, 57*300 + 1, 57*300 + 2}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestSpliceMatchesGoMail renders the same message twice with go-mail, once
// encoding the content itself and once with tokens spliced afterwards, and
// expects the same bytes: splice changes how much is allocated, not what is
// written. A fixed boundary makes the two renderings comparable.
func TestSpliceMatchesGoMail(t *testing.T) {
	t.Parallel()
	// room is the capacity given to the largest content, which is then
	// Owned: 0 for none, else that many bytes.
	render := func(t *testing.T, contents [][]byte, spliced bool, room int) []byte {
		t.Helper()
		m := gomail.NewMsg(gomail.WithNoDefaultUserAgent(), gomail.WithBoundary("b0undary"))
		if err := m.From("a@contoso.com"); err != nil {
			t.Fatal(err)
		}
		m.SetBodyString(gomail.TypeTextPlain, "text")
		m.AddAlternativeString(gomail.TypeTextHTML, "<p>html</p>")
		var bodies []*attachmentBody
		var embeds, files []*gomail.File
		for i, c := range contents {
			w := bytesWriter(c)
			if spliced {
				b, token := newAttachmentBody(c)
				if room > 0 && i == len(contents)-1 {
					b.content = append(make([]byte, 0, room), c...)
					b.owned = true
				}
				bodies = append(bodies, b)
				w = bytesWriter(token)
			}
			f := &gomail.File{Name: "f.bin", ContentType: "application/octet-stream", Header: map[string][]string{}, Writer: w}
			// The first half are embeds: go-mail writes them first.
			if i < len(contents)/2 {
				embeds = append(embeds, f)
			} else {
				files = append(files, f)
			}
		}
		m.SetEmbeds(embeds)
		m.SetAttachments(files)
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		if !spliced {
			return buf.Bytes()
		}
		out, err := splice(buf.Bytes(), bodies, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != cap(out) && room == 0 {
			t.Errorf("spliced message is %d bytes in a buffer of %d: the size is not computed exactly", len(out), cap(out))
		}
		host := bodies[len(bodies)-1].content
		inHost := len(out) > 0 && cap(host) > 0 && &out[0] == &host[:1][0]
		if fits := room >= len(out); room > 0 && inHost != fits {
			t.Errorf("rendered in the owned array: %v; room %d for %d bytes", inHost, room, len(out))
		}
		return out
	}
	for _, n := range attachmentSizes {
		contents := [][]byte{randomBytes(uint64(n), n), randomBytes(uint64(n)+1, n/2), randomBytes(uint64(n)+2, n+1)}
		want := render(t, contents, false, 0)
		// Spliced into a new buffer, then in the last attachment's own
		// array: with exactly the room, and one byte short (a new buffer).
		for _, room := range []int{0, len(want), len(want) - 1} {
			got := render(t, contents, true, room)
			// The Date header differs between the two renderings when the second
			// turns; compare from the first boundary on.
			at := bytes.Index(want, []byte("--b0undary"))
			bt := bytes.Index(got, []byte("--b0undary"))
			if at < 0 || !bytes.Equal(want[at:], got[bt:]) {
				t.Errorf("size %d, room %d: spliced rendering differs from go-mail's\nwant %q\n got %q", n, room, want, got)
			}
		}
	}
}

func TestBuildAttachmentSizes(t *testing.T) {
	t.Parallel()
	for _, n := range attachmentSizes {
		in := Input{
			From: "a@contoso.com", To: []string{"b@contoso.com"}, Text: "x", HTML: "<img src=cid:logo>",
			Attachments: []Attachment{
				{Filename: "a.bin", ContentType: "application/octet-stream", Content: randomBytes(1, n)},
				{Filename: "logo.png", ContentType: "image/png", ContentID: "logo", Content: randomBytes(2, n+1)},
				{Filename: "c.bin", ContentType: "application/octet-stream", Content: randomBytes(3, n+2)},
			},
		}
		msg, err := Build(in, testOptions())
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		root := parseMessage(t, msg.Bytes)
		if got, want := root.shape(), "multipart/mixed[multipart/related[multipart/alternative[text/plain,text/html],image/png],application/octet-stream,application/octet-stream]"; got != want {
			t.Fatalf("size %d: shape %s, want %s", n, got, want)
		}
		parts := []*node{root.parts[1], root.parts[0].parts[1], root.parts[2]}
		for i, p := range parts {
			if !bytes.Equal(p.body, in.Attachments[i].Content) {
				t.Errorf("size %d: attachment %d differs after a round trip (%d bytes, want %d)", n, i, len(p.body), len(in.Attachments[i].Content))
			}
		}
	}
}

func TestSpliceRefusesMissingToken(t *testing.T) {
	t.Parallel()
	b, _ := newAttachmentBody([]byte("x"))
	if _, err := splice([]byte("Subject: x\r\n\r\nno token here\r\n"), []*attachmentBody{b}, 0); err == nil {
		t.Fatal("splice found a token that is not there")
	}
}

// TestBuildOwnedLargeAttachment renders a 3 MB attachment in its own array
// (Owned), between two ordinary ones, and reads it back with go-message:
// every byte comes back, and the message is in the attachment's array.
func TestBuildOwnedLargeAttachment(t *testing.T) {
	t.Parallel()
	const n = 3<<20 + 5
	content := randomBytes(7, n)
	room := EncodedLen(n) + 8<<10
	owned := append(make([]byte, 0, room), content...)
	in := Input{
		From: "a@contoso.com", To: []string{"b@contoso.com"}, Text: "see attached", HTML: "<img src=cid:logo>",
		Attachments: []Attachment{
			{Filename: "logo.png", ContentType: "image/png", ContentID: "logo", Content: randomBytes(8, 1000)},
			{Filename: "dump.bin", ContentType: "application/octet-stream", Content: owned, Owned: true},
			{Filename: "c.bin", ContentType: "application/octet-stream", Content: randomBytes(9, 58)},
		},
	}
	small := [][]byte{bytes.Clone(in.Attachments[0].Content), bytes.Clone(in.Attachments[2].Content)}
	msg, err := Build(in, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if &msg.Bytes[0] != &owned[:1][0] {
		t.Error("the message was not rendered in the owned attachment's array")
	}
	checkOutput(t, msg)
	root := parseMessage(t, msg.Bytes)
	if got, want := root.shape(), "multipart/mixed[multipart/related[multipart/alternative[text/plain,text/html],image/png],application/octet-stream,application/octet-stream]"; got != want {
		t.Fatalf("shape %s, want %s", got, want)
	}
	for i, c := range []struct {
		got, want []byte
	}{{root.parts[0].parts[1].body, small[0]}, {root.parts[1].body, content}, {root.parts[2].body, small[1]}} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("attachment %d differs after a round trip (%d bytes, want %d)", i, len(c.got), len(c.want))
		}
	}

	// Without the room, the same message comes out in a new buffer.
	owned = append(make([]byte, 0, n), content...)
	in.Attachments[1].Content = owned
	msg, err = Build(in, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if root := parseMessage(t, msg.Bytes); !bytes.Equal(root.parts[1].body, content) || !bytes.Equal(owned, content) {
		t.Error("an owned attachment without the room was not rendered as an ordinary one")
	}
}

// textBodies are texts whose quoted-printable encoding has something to
// get right: long lines (soft breaks at 75), lines of 75 to 77
// characters, every kind of line break, trailing blanks, '=' and
// non-ASCII (escaped, three bytes for one), and a text that escapes far
// more than encodeQP's first guess at the size.
var textBodies = []string{
	"x",
	strings.Repeat("Lorem ipsum dolor sit amet. ", 72)[:2000],
	"line 1\nline 2\r\nline 3\rline 4\n\n",
	"trailing  \nblanks\t\n  ",
	strings.Repeat("a", 75) + "\n" + strings.Repeat("b", 76) + "\n" + strings.Repeat("c", 77),
	"ü = 1 €, 😀, \x7f",
	strings.Repeat("=", 1000) + strings.Repeat("é", 500),
}

// TestSpliceTextMatchesGoMail renders messages twice with go-mail, once
// encoding the text and HTML itself and once with their tokens spliced
// afterwards (newTextBody), and expects the same bytes, for a text alone
// (go-mail's single-part rendering), HTML alone, both, and both with an
// attachment.
func TestSpliceTextMatchesGoMail(t *testing.T) {
	t.Parallel()
	render := func(t *testing.T, text, html string, attach, spliced bool) []byte {
		t.Helper()
		m := gomail.NewMsg(gomail.WithNoDefaultUserAgent(), gomail.WithBoundary("b0undary"))
		if err := m.From("a@contoso.com"); err != nil {
			t.Fatal(err)
		}
		m.SetDateWithValue(time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC))
		m.SetMessageIDWithValue("id@contoso.com")
		var bodies []*attachmentBody
		part := func(s string) func(io.Writer) (int64, error) {
			if !spliced {
				return bytesWriter([]byte(s))
			}
			b := newTextBody(s)
			bodies = append(bodies, b)
			return bytesWriter(b.mark)
		}
		switch {
		case text != "" && html != "":
			m.SetBodyWriter(gomail.TypeTextPlain, part(text))
			m.AddAlternativeWriter(gomail.TypeTextHTML, part(html))
		case text != "":
			m.SetBodyWriter(gomail.TypeTextPlain, part(text))
		default:
			m.SetBodyWriter(gomail.TypeTextHTML, part(html))
		}
		if attach {
			content := randomBytes(7, 100)
			w := bytesWriter(content)
			if spliced {
				b, token := newAttachmentBody(content)
				bodies = append(bodies, b)
				w = bytesWriter(token)
			}
			m.SetAttachments([]*gomail.File{{Name: "f.bin", ContentType: "application/octet-stream", Header: map[string][]string{}, Writer: w}})
		}
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		if !spliced {
			return buf.Bytes()
		}
		out, err := splice(buf.Bytes(), bodies, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != cap(out) {
			t.Errorf("spliced message is %d bytes in a buffer of %d: the size is not computed exactly", len(out), cap(out))
		}
		return out
	}
	for i, text := range textBodies {
		html := "<p>" + textBodies[len(textBodies)-1-i] + "</p>"
		for _, c := range []struct {
			text, html string
			attach     bool
		}{{text, "", false}, {"", html, false}, {text, html, false}, {text, html, true}} {
			want := render(t, c.text, c.html, c.attach, false)
			if got := render(t, c.text, c.html, c.attach, true); !bytes.Equal(got, want) {
				t.Errorf("text %d (html %v, attachment %v): spliced rendering differs from go-mail's\nwant %q\n got %q",
					i, c.html != "", c.attach, want, got)
			}
		}
	}
}
