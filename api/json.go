package api

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"

	"github.com/labstack/echo/v5"
)

// jsonSerializer writes JSON without HTML escaping: addresses such as
// `Alerts <alerts@contoso.com>` read as written, not as \u003c…\u003e. The
// API never serves HTML, so the escaping protects nothing.
type jsonSerializer struct{ echo.DefaultJSONSerializer }

func (jsonSerializer) Serialize(c *echo.Context, target any, indent string) error {
	enc := json.NewEncoder(c.Response())
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	return enc.Encode(target)
}

// appendAccepted appends the answer to a stored message,
// {"id":"…","status":"…"} and a newline, to b: what jsonSerializer writes
// for map[string]string{"id": id, "status": status}, without reflection
// and map sorting. It returns nil unless both strings are printable ASCII
// without '"' or '\\', which the encoder writes as they are (ids are;
// TestAppendAcceptedMatchesEncoder); the caller then uses the encoder.
func appendAccepted(b []byte, id, status string) []byte {
	if !plainJSON(id) || !plainJSON(status) {
		return nil
	}
	b = append(slices.Grow(b, len(`{"id":"","status":""}`)+len(id)+len(status)+1), `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","status":"`...)
	b = append(b, status...)
	return append(b, "\"}\n"...)
}

// plainJSON reports whether s needs no escaping in a JSON string.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// The usual JSON submission is a flat object of a few strings and about
// a kilobyte or more of text. encoding/json reads it in two passes of its
// byte-at-a-time scanner (one to find the value's end or check it, one to
// decode), which cost more than anything else the door does with the
// body. decodeSubmission reads that usual shape in one pass instead, and
// hands everything else to decodeStrict unchanged: fastSubmission takes an
// object only when every member is one of the known fields by its exact
// name, given once, with a value of the plain kind for it — a string; for
// to, cc and bcc a string or an array of strings; for headers and metadata
// an object of strings. Attachments, template data, null, numbers,
// booleans, a field name in other letter case, a repeated field, a string
// with a control character, anything malformed: all of it goes to
// encoding/json, which then answers as it always did, errors included. A
// string with a \u escape is decoded by encoding/json on its own. The
// result is the one encoding/json gives for the same body
// (FuzzFastSubmissionMatchesEncodingJSON); a field added to jsonSubmission
// but not here is simply not of the usual shape.

// decodeSubmission decodes raw, valid UTF-8 whose shape checkJSONShape
// accepted, into js, refusing unknown fields. key, when not nil, takes a
// batch item's idempotency_key.
func decodeSubmission(raw []byte, js *jsonSubmission, key *string) error {
	if fastSubmission(raw, js, key) {
		return nil
	}
	*js = jsonSubmission{}
	if key == nil {
		return decodeStrict(raw, js)
	}
	item := batchItem{}
	if err := decodeStrict(raw, &item); err != nil {
		return err
	}
	*js, *key = item.jsonSubmission, item.IdempotencyKey
	return nil
}

// jsonField is a member of a JSON submission that fastSubmission reads.
type jsonField uint16

const (
	fieldFrom jsonField = 1 << iota
	fieldTo
	fieldCc
	fieldBcc
	fieldReplyTo
	fieldSubject
	fieldText
	fieldHTML
	fieldHeaders
	fieldMetadata
	fieldTemplate
	fieldSendAt
	fieldIdempotencyKey
)

// fastSubmission is decodeSubmission's one pass; false means the body is
// not of the usual shape and js, key hold partial results to be discarded.
func fastSubmission(raw []byte, js *jsonSubmission, key *string) bool {
	s := jsonScanner{b: raw}
	if !s.consume('{') {
		return false
	}
	var seen jsonField
	if s.consume('}') {
		return s.end()
	}
	for {
		name, ok := s.plainString()
		if !ok || !s.consume(':') {
			return false
		}
		var f jsonField
		var str *string
		switch string(name) { // compared, not copied
		case "from":
			f, str = fieldFrom, &js.From
		case "reply_to":
			f, str = fieldReplyTo, &js.ReplyTo
		case "subject":
			f, str = fieldSubject, &js.Subject
		case "text":
			f, str = fieldText, &js.Text
		case "html":
			f, str = fieldHTML, &js.HTML
		case "template":
			f, str = fieldTemplate, &js.Template
		case "send_at":
			f, str = fieldSendAt, &js.SendAt
		case "idempotency_key":
			if key == nil {
				return false
			}
			f, str = fieldIdempotencyKey, key
		case "to":
			f = fieldTo
		case "cc":
			f = fieldCc
		case "bcc":
			f = fieldBcc
		case "headers":
			f = fieldHeaders
		case "metadata":
			f = fieldMetadata
		default:
			return false // attachments, data, or not a field
		}
		if seen&f != 0 {
			return false
		}
		seen |= f
		switch {
		case str != nil:
			if *str, ok = s.string(); !ok {
				return false
			}
		case f == fieldTo:
			ok = s.addrList(&js.To)
		case f == fieldCc:
			ok = s.addrList(&js.Cc)
		case f == fieldBcc:
			ok = s.addrList(&js.Bcc)
		case f == fieldHeaders:
			js.Headers, ok = s.stringMap()
		case f == fieldMetadata:
			js.Metadata, ok = s.stringMap()
		}
		if !ok {
			return false
		}
		if s.consume('}') {
			return s.end()
		}
		if !s.consume(',') {
			return false
		}
	}
}

// jsonScanner reads the plain parts of a JSON text.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume skips white space and then c, if c is next.
func (s *jsonScanner) consume(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (s *jsonScanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// plainString reads a string without escapes (a member name), in place.
func (s *jsonScanner) plainString() ([]byte, bool) {
	start, end, escaped, ok := s.stringToken()
	if !ok || escaped {
		return nil, false
	}
	return s.b[start+1 : end-1], true
}

// string reads a string value. The one-character escapes (a text's line
// breaks and tabs, quotes, backslashes, slashes) are decoded here; a
// string with a \u escape, whose surrogate pairs have rules of their own,
// is decoded by encoding/json.
func (s *jsonScanner) string() (string, bool) {
	start, end, escaped, ok := s.stringToken()
	if !ok {
		return "", false
	}
	if !escaped {
		return string(s.b[start+1 : end-1]), true
	}
	if v, ok := unescapeShort(s.b[start+1 : end-1]); ok {
		return v, true
	}
	var v string
	if json.Unmarshal(s.b[start:end], &v) != nil {
		return "", false
	}
	return v, true
}

// unescapeShort decodes the content of a JSON string, valid UTF-8 without
// control characters, whose escapes are all \" \\ \/ \b \f \n \r or \t;
// any other escape makes it not ok.
func unescapeShort(b []byte) (string, bool) {
	var out strings.Builder
	out.Grow(len(b))
	for {
		k := bytes.IndexByte(b, '\\')
		if k < 0 {
			out.Write(b)
			return out.String(), true
		}
		out.Write(b[:k])
		if k+1 == len(b) {
			return "", false
		}
		switch c := b[k+1]; c {
		case '"', '\\', '/':
			out.WriteByte(c)
		case 'b':
			out.WriteByte('\b')
		case 'f':
			out.WriteByte('\f')
		case 'n':
			out.WriteByte('\n')
		case 'r':
			out.WriteByte('\r')
		case 't':
			out.WriteByte('\t')
		default:
			return "", false
		}
		b = b[k+2:]
	}
}

// stringToken finds the string that comes next: from its opening quote at
// start to just after its closing one at end, and whether it has escapes.
// A control character, which JSON does not allow in a string, makes it
// not ok.
func (s *jsonScanner) stringToken() (start, end int, escaped, ok bool) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return 0, 0, false, false
	}
	start = s.i
	for i := start + 1; i < len(s.b); i++ {
		// Eight bytes at a time while none of them is special.
		for i+8 <= len(s.b) && !jsonSpecial8(binary.LittleEndian.Uint64(s.b[i:])) {
			i += 8
		}
		if i == len(s.b) {
			break
		}
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			return start, i + 1, escaped, true
		case c == '\\':
			escaped = true
			i++ // the escaped character, a quote perhaps
		case c < ' ':
			return 0, 0, false, false
		}
	}
	return 0, 0, false, false
}

// jsonSpecial8 reports whether one of the eight bytes in x could end or
// escape a string or is a control character: '"', '\\' or below ' '. It
// may say so of a byte that is not (the caller then looks at each byte),
// never the other way round.
func jsonSpecial8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	below := (x - ones*' ') &^ x & highs
	quote := x ^ (ones * '"')
	backslash := x ^ (ones * '\\')
	return below|((quote-ones)&^quote&highs)|((backslash-ones)&^backslash&highs) != 0
}

// addrList reads to, cc or bcc as addrList.UnmarshalJSON would.
func (s *jsonScanner) addrList(a *addrList) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '"' {
		one, ok := s.string()
		if !ok || checkListLength("to, cc or bcc", one) != nil {
			return false
		}
		*a = splitAddresses(one)
		return true
	}
	if !s.consume('[') {
		return false
	}
	many := []string{}
	if s.consume(']') {
		*a = many
		return true
	}
	for {
		v, ok := s.string()
		if !ok {
			return false
		}
		many = append(many, v)
		if s.consume(']') {
			*a = many
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

// stringMap reads an object of strings, as encoding/json fills a
// map[string]string: a later member of the same name wins.
func (s *jsonScanner) stringMap() (map[string]string, bool) {
	if !s.consume('{') {
		return nil, false
	}
	m := map[string]string{}
	if s.consume('}') {
		return m, true
	}
	for {
		k, ok := s.string()
		if !ok || !s.consume(':') {
			return nil, false
		}
		if m[k], ok = s.string(); !ok {
			return nil, false
		}
		if s.consume('}') {
			return m, true
		}
		if !s.consume(',') {
			return nil, false
		}
	}
}
