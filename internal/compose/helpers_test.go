package compose

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	gmail "github.com/emersion/go-message/mail"
)

// node is an entity of a parsed message: what a recipient's client sees.
type node struct {
	header    message.Header
	mediaType string
	params    map[string]string
	body      []byte // decoded, for leaves
	parts     []*node
}

// shape renders the MIME tree as "multipart/mixed[text/plain,image/png]".
func (n *node) shape() string {
	if len(n.parts) == 0 {
		return n.mediaType
	}
	s := make([]string, len(n.parts))
	for i, p := range n.parts {
		s[i] = p.shape()
	}
	return n.mediaType + "[" + strings.Join(s, ",") + "]"
}

// find returns the first leaf of the given media type, depth-first.
func (n *node) find(mediaType string) *node {
	if len(n.parts) == 0 && n.mediaType == mediaType {
		return n
	}
	for _, p := range n.parts {
		if f := p.find(mediaType); f != nil {
			return f
		}
	}
	return nil
}

// parseMessage parses b independently of the code under test, with
// go-message, decoding every leaf.
func parseMessage(t testing.TB, b []byte) *node {
	t.Helper()
	e, err := message.Read(bytes.NewReader(b))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		t.Fatalf("go-message cannot read the message: %v\n%s", err, b)
	}
	n, err := toNode(e)
	if err != nil {
		t.Fatalf("go-message cannot read the message: %v\n%s", err, b)
	}
	return n
}

func toNode(e *message.Entity) (*node, error) {
	mt, params, err := e.Header.ContentType()
	if err != nil && e.Header.Get("Content-Type") != "" {
		// A part without the header is text/plain (RFC 2045 section 5.2);
		// its media type stays empty.
		return nil, err
	}
	n := &node{header: e.Header, mediaType: mt, params: params}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return nil, err
			}
			c, err := toNode(p)
			if err != nil {
				return nil, err
			}
			n.parts = append(n.parts, c)
		}
		return n, nil
	}
	b, err := io.ReadAll(e.Body)
	n.body = b
	return n, err
}

func mailHeader(n *node) *gmail.Header {
	return &gmail.Header{Header: n.header}
}

// lf turns CRLF into LF: quoted-printable bodies come back with CRLF.
func lf(b []byte) string {
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// wantError checks that err is an *Error with the given code and field.
func wantError(t *testing.T, err error, code, field string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *Error %s/%s", err, err, code, field)
	}
	if e.Code != code || e.Field != field {
		t.Fatalf("error = %s %q: %s, want %s %q", e.Code, e.Field, e.Message, code, field)
	}
}

// checkHeaderInvariants asserts what every message leaving compose must
// satisfy: no Bcc, and no CR or LF inside any header value (only as part of
// a CRLF fold followed by whitespace).
func checkHeaderInvariants(t testing.TB, b []byte) {
	t.Helper()
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if !bytes.HasPrefix(b, []byte("\r\n")) {
			t.Fatalf("no end of header in\n%q", b)
		}
		end = 0
	}
	head := b[:end+2]
	n := parseMessage(t, b)
	if n.header.Has("Bcc") {
		t.Fatalf("Bcc header present:\n%s", head)
	}
	for i := 0; i < len(head); i++ {
		switch head[i] {
		case '\r':
			if i+1 >= len(head) || head[i+1] != '\n' {
				t.Fatalf("bare CR in header at %d:\n%q", i, head)
			}
		case '\n':
			if i == 0 || head[i-1] != '\r' {
				t.Fatalf("bare LF in header at %d:\n%q", i, head)
			}
		}
	}
	fields := n.header.Fields()
	for fields.Next() {
		if strings.ContainsAny(fields.Value(), "\r\n") {
			t.Fatalf("header %s value contains CR or LF: %q", fields.Key(), fields.Value())
		}
	}
}
