package compose

import (
	"bytes"
	"math/rand/v2"
	"testing"

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
	render := func(t *testing.T, contents [][]byte, spliced bool) []byte {
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
		if len(out) != cap(out) {
			t.Errorf("spliced message is %d bytes in a buffer of %d: the size is not computed exactly", len(out), cap(out))
		}
		return out
	}
	for _, n := range attachmentSizes {
		contents := [][]byte{randomBytes(uint64(n), n), randomBytes(uint64(n)+1, n/2), randomBytes(uint64(n)+2, n+1)}
		want := render(t, contents, false)
		got := render(t, contents, true)
		// The Date header differs between the two renderings when the second
		// turns; compare from the first boundary on.
		at := bytes.Index(want, []byte("--b0undary"))
		bt := bytes.Index(got, []byte("--b0undary"))
		if at < 0 || !bytes.Equal(want[at:], got[bt:]) {
			t.Errorf("size %d: spliced rendering differs from go-mail's\nwant %q\n got %q", n, want, got)
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
