package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-message/mail"

	"github.com/mailgate/mailgate/internal/compose"
)

func TestParseJSON(t *testing.T) {
	t.Parallel()
	content := []byte("\x00\x01binary/\xff")
	b64 := base64.StdEncoding.EncodeToString(content)
	for _, tc := range []struct {
		name, body string
		field      string // of the 400; empty: accepted
	}{
		{name: "attachment", body: `{"to":"a@contoso.com","text":"x","attachments":[{"filename":"a.bin","content":"` + b64 + `"}]}`},
		{name: "escaped slash in content", body: `{"to":"a@contoso.com","text":"x","attachments":[{"filename":"a.bin","content":"` + strings.ReplaceAll(b64, "/", `\/`) + `"}]}`},
		{name: "keys matched without case, as encoding/json does", body: `{"TO":"a@contoso.com","Text":"x","attachments":[{"FileName":"a.bin","content":"` + b64 + `"}]}`},
		{name: "quotes and backslashes around the keys", body: `{"to":"a@contoso.com","text":"a \"b\": \\\\","subject":"\\\"","attachments":[{"filename":"a.bin","content":"` + b64 + `"}]}`},
		{name: "unknown top-level field", body: `{"to":"a@contoso.com","text":"x","bodyy":"typo"}`, field: "-"},
		{name: "unknown field after a string that looks like a key", body: `{"text":"\"bodyy\":","to":"a@contoso.com","bodyy":1}`, field: "-"},
		{name: "unknown attachment field", body: `{"to":"a@contoso.com","text":"x","attachments":[{"filename":"a.bin","content":"` + b64 + `","size":3}]}`, field: "-"},
		{name: "bad base64 names the attachment", body: `{"to":"a@contoso.com","text":"x","attachments":[{"filename":"a.bin","content":"` + b64 + `"},{"filename":"b.bin","content":"@@@"}]}`, field: "attachments[1].content"},
		{name: "content as an array of numbers", body: `{"to":"a@contoso.com","text":"x","attachments":[{"filename":"a.bin","content":[1,2]}]}`, field: "-"},
		{name: "trailing value", body: `{"to":"a@contoso.com","text":"x"} {}`, field: "-"},
		{name: "not UTF-8", body: "{\"to\":\"a@contoso.com\",\"text\":\"\xff\"}", field: "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sub, err := parseJSON(strings.NewReader(tc.body), int64(len(tc.body)))
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(sub.in.Attachments) != 1 || !bytes.Equal(sub.in.Attachments[0].Content, content) {
					t.Fatalf("attachments = %+v", sub.in.Attachments)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) || p.Code != CodeInvalidBody {
				t.Fatalf("err = %v, want %s", err, CodeInvalidBody)
			}
			if tc.field != "-" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
				t.Fatalf("errors = %+v, want field %s", p.Errors, tc.field)
			}
		})
	}
}

func TestJSONSkeleton(t *testing.T) {
	t.Parallel()
	in := `{ "a" : "x\"y\\", "b":[ {"c":"` + strings.Repeat("z", 1000) + `"}, 1.5e3, true, null ], "d\"e" :{}}`
	if got, want := string(jsonSkeleton([]byte(in))), `{"a":"","b":[{"c":""},1.5e3,true,null],"d\"e":{}}`; got != want {
		t.Fatalf("skeleton\n got %s\nwant %s", got, want)
	}
	if !json.Valid(jsonSkeleton([]byte(in))) {
		t.Fatal("skeleton is not JSON")
	}
}

func TestReadSized(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"exact", int64(len(data))},
		{"unknown", -1},
		{"too small", 10},
		{"far too large", 10 * int64(len(data))},
	} {
		got, err := readSized(iotest.HalfReader(bytes.NewReader(data)), tc.size)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, %v", tc.name, len(got), err)
		}
		if tc.size > 0 && cap(got) > len(got)+len(got)/8 {
			t.Errorf("%s: %d bytes kept in a buffer of %d", tc.name, len(got), cap(got))
		}
	}
	if _, err := readSized(iotest.DataErrReader(iotest.ErrReader(io.ErrUnexpectedEOF)), 100); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a failing reader: err = %v", err)
	}
}

func TestParseMultipartFiles(t *testing.T) {
	t.Parallel()
	a := bytes.Repeat([]byte{0xff, 0}, 100_000)
	b := []byte("second file")
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, kv := range [][2]string{{"to", "a@contoso.com"}, {"text", "x"}} {
		if err := w.WriteField(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct {
		name    string
		content []byte
	}{{"a.bin", a}, {"b.txt", b}} {
		fw, err := w.CreateFormFile("attachment", f.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write(f.content); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{int64(buf.Len()), -1} {
		sub, err := parseMultipart(bytes.NewReader(buf.Bytes()), size, w.Boundary())
		if err != nil {
			t.Fatal(err)
		}
		if len(sub.in.Attachments) != 2 || !bytes.Equal(sub.in.Attachments[0].Content, a) || !bytes.Equal(sub.in.Attachments[1].Content, b) {
			t.Fatalf("size %d: attachments differ", size)
		}
		// A file keeps the room to render the message in (Owned), not more.
		if c := sub.in.Attachments[0].Content; cap(c) > (compose.EncodedLen(len(c))+len(c)/2+64<<10)*9/8 {
			t.Errorf("size %d: the first file keeps a buffer of %d for %d bytes", size, cap(c), len(c))
		}
		if !sub.in.Attachments[0].Owned || !sub.in.Attachments[1].Owned {
			t.Errorf("size %d: the files are not Owned", size)
		}
		if sub.in.Text != "x" || len(sub.in.To) != 1 {
			t.Errorf("size %d: fields = %+v", size, sub.in)
		}
	}
}

// TestParseJSONLargeAttachments decodes base64 where it lies in the body,
// across the decoder's blocks, and renders the last attachment's message
// in the body's own array; every byte reads back.
func TestParseJSONLargeAttachments(t *testing.T) {
	t.Parallel()
	first := bytes.Repeat([]byte("first\x00\xff"), 3*1024/7*3+1) // not a whole number of blocks
	last := make([]byte, 400_000)
	for i := range last {
		last[i] = byte(i * 7 / 3)
	}
	// Line breaks as JSON escapes, as some encoders write MIME base64.
	broken := base64.StdEncoding.EncodeToString(first)
	broken = broken[:76] + `\r\n` + broken[76:200] + `\n` + broken[200:]
	body := `{"from":"b@contoso.com","to":"a@contoso.com","text":"x","attachments":[{"filename":"a.bin","content":"` + broken +
		`"},{"filename":"b.bin","content":"` + base64.StdEncoding.EncodeToString(last) + `"}],"subject":"after"}`
	sub, err := parseJSON(strings.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	atts := sub.in.Attachments
	if len(atts) != 2 || !bytes.Equal(atts[0].Content, first) || !bytes.Equal(atts[1].Content, last) {
		t.Fatal("attachments differ after decoding")
	}
	if atts[0].Owned || !atts[1].Owned {
		t.Fatalf("Owned = %v, %v; want only the last", atts[0].Owned, atts[1].Owned)
	}
	if sub.in.Subject != "after" {
		t.Errorf("subject = %q", sub.in.Subject)
	}
	content := atts[1].Content
	msg, err := compose.Build(sub.in, compose.Options{MessageIDLocal: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if &msg.Bytes[0] != &content[:1][0] {
		t.Error("the message was not rendered in the body's array")
	}
	r, err := mail.CreateReader(bytes.NewReader(msg.Bytes))
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Header.(*mail.AttachmentHeader); ok {
			b, err := io.ReadAll(p.Body)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b)
		}
	}
	if len(got) != 2 || !bytes.Equal(got[0], first) || !bytes.Equal(got[1], last) {
		t.Fatalf("%d attachments read back, not the ones sent", len(got))
	}
}

func TestJSONContentDecodeRefusesPaddingInside(t *testing.T) {
	t.Parallel()
	// Padding that ends the decoder's first block, and more after it.
	s := strings.Repeat("A", 4<<10-4) + "QQ==" + "QUFB"
	c := jsonContent{src: []byte(s), valid: true}
	if _, err := c.decode(); err == nil {
		t.Fatal("padding before the end was accepted")
	}
	if _, err := base64.StdEncoding.DecodeString(s); err == nil {
		t.Fatal("the standard decoder accepts it: the test is wrong")
	}
}
