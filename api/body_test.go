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
		if c := sub.in.Attachments[0].Content; cap(c) > len(c)+len(c)/8 {
			t.Errorf("size %d: the first file keeps a buffer of %d for %d bytes", size, cap(c), len(c))
		}
		if sub.in.Text != "x" || len(sub.in.To) != 1 {
			t.Errorf("size %d: fields = %+v", size, sub.in)
		}
	}
}
