package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/compose"
)

// jsonSubmission is the JSON body of POST /v1/messages.
type jsonSubmission struct {
	From        string            `json:"from"`
	To          addrList          `json:"to"`
	Cc          addrList          `json:"cc"`
	Bcc         addrList          `json:"bcc"`
	ReplyTo     string            `json:"reply_to"`
	Subject     string            `json:"subject"`
	Text        string            `json:"text"`
	HTML        string            `json:"html"`
	Headers     map[string]string `json:"headers"`
	Attachments []jsonAttachment  `json:"attachments"`
	Metadata    map[string]string `json:"metadata"`
	// Template and Data render subject, text and html (templating.go).
	Template string          `json:"template"`
	Data     json.RawMessage `json:"data"`
	SendAt   string          `json:"send_at"`
}

type jsonAttachment struct {
	Filename    string      `json:"filename"`
	ContentType string      `json:"content_type"`
	Content     jsonContent `json:"content"`
	ContentID   string      `json:"content_id"`
}

// addrList takes a string (one address, or several separated by commas)
// or an array of strings.
type addrList []string

func (a *addrList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		if err := checkListLength("to, cc or bcc", one); err != nil {
			return err
		}
		*a = splitAddresses(one)
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("must be a string or an array of strings")
	}
	*a = many
	return nil
}

// splitAddresses splits "a@x, Jane <j@x>" on the commas between addresses
// (not those inside a quoted display name). A list that does not parse is
// passed on whole, so the address check reports it.
func splitAddresses(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	if !strings.Contains(s, ",") {
		return []string{s}
	}
	list, err := mail.ParseAddressList(s)
	if err != nil {
		return []string{s}
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.String()
	}
	return out
}

// parseJSON decodes the body with json.Unmarshal straight from one buffer
// of the declared size (and room to render a large message in: jsonRoom);
// attachments are base64-decoded in that buffer once it has been parsed
// (jsonContent). See body.go for what that saves.
func parseJSON(body io.Reader, size int64) (*submission, error) {
	raw, err := readSized(body, jsonRoom(size))
	if err != nil {
		return nil, err
	}
	// encoding/json would silently turn invalid UTF-8 into U+FFFD.
	if !utf8.Valid(raw) {
		return nil, errInvalidBody("the body is not valid UTF-8")
	}
	if err := checkJSONShape(raw); err != nil {
		return nil, err
	}
	var js jsonSubmission
	if err := decodeSubmission(raw, &js, nil); err != nil {
		return nil, err
	}
	return js.submission()
}

// decodeStrict decodes raw, valid UTF-8, into v (a pointer to a struct),
// refusing fields v does not have. A small body is decoded once, by a
// json.Decoder that refuses unknown fields; a large one (attachments) is
// decoded by json.Unmarshal straight from raw, and only its skeleton
// (jsonSkeleton) goes through the Decoder, which would copy the whole body
// into a buffer of its own.
func decodeStrict[T any](raw []byte, v *T) error {
	if len(raw) <= smallJSON {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return jsonProblem(err)
		}
		if len(bytes.TrimLeft(raw[dec.InputOffset():], " \t\r\n")) > 0 {
			return errInvalidBody("malformed JSON: invalid character after the top-level value")
		}
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return jsonProblem(err)
	}
	dec := json.NewDecoder(bytes.NewReader(jsonSkeleton(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(new(T)); err != nil {
		return errInvalidBody("malformed JSON: " + jsonError(err))
	}
	return nil
}

// jsonProblem is the answer to a decoding error: the problem a field's
// own decoder returned, or a malformed body.
func jsonProblem(err error) error {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return errInvalidBody("malformed JSON: " + jsonError(err))
}

// smallJSON is the largest body decodeStrict decodes in one pass.
const smallJSON = 64 << 10

// submission checks what the JSON could not and returns the request.
func (js *jsonSubmission) submission() (*submission, error) {
	sub := &submission{in: compose.Input{
		From: js.From, To: js.To, Cc: js.Cc, Bcc: js.Bcc, ReplyTo: js.ReplyTo,
		Subject: js.Subject, Text: js.Text, HTML: js.HTML, Headers: js.Headers,
	}, metadata: js.Metadata, template: js.Template, data: js.Data, sendAt: js.SendAt}
	// raw is not read any more: the attachments are decoded where they
	// are. Only the last one's array, up to the end of raw, holds no other
	// attachment, so it alone may be rendered in.
	for i, a := range js.Attachments {
		data, err := a.Content.decode()
		if err != nil {
			return nil, errInvalidBody("attachment content must be standard base64",
				FieldError{Field: fmt.Sprintf("attachments[%d].content", i), Message: "invalid base64"})
		}
		sub.in.Attachments = append(sub.in.Attachments, compose.Attachment{
			Filename: a.Filename, ContentType: a.ContentType, Content: data, ContentID: a.ContentID,
			Owned: i == len(js.Attachments)-1})
	}
	if err := checkMetadata(sub.metadata); err != nil {
		return nil, err
	}
	return sub, nil
}

func jsonError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v (at byte %d)", se, se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "the body ends before the JSON does"
	}
	return err.Error()
}

// Limits on metadata, which is stored with the message and shown in its status.
const (
	maxMetadataKeys  = 32
	maxMetadataBytes = 4096
)

func checkMetadata(m map[string]string) error {
	total := 0
	for k, v := range m {
		total += len(k) + len(v)
		if strings.ContainsAny(k+v, "\r\n\x00") {
			return errValidation("metadata must not contain line breaks", FieldError{Field: "metadata." + k, Message: "line break"})
		}
	}
	if len(m) > maxMetadataKeys || total > maxMetadataBytes {
		return errValidation(fmt.Sprintf("metadata is limited to %d keys and %d bytes", maxMetadataKeys, maxMetadataBytes),
			FieldError{Field: "metadata", Message: "too large"})
	}
	return nil
}

// formFields applies the fields shared by multipart and URL-encoded forms.
func formFields(values map[string][]string) (*submission, error) {
	sub := &submission{}
	for name, vs := range values {
		one := func() (string, error) {
			if len(vs) > 1 {
				return "", errInvalidBody("field "+name+" was given more than once", FieldError{Field: name, Message: "repeated"})
			}
			return vs[0], nil
		}
		var err error
		switch {
		case name == "from":
			sub.in.From, err = one()
		case name == "to":
			sub.in.To, err = appendAddrs(sub.in.To, name, vs)
		case name == "cc":
			sub.in.Cc, err = appendAddrs(sub.in.Cc, name, vs)
		case name == "bcc":
			sub.in.Bcc, err = appendAddrs(sub.in.Bcc, name, vs)
		case name == "reply_to":
			sub.in.ReplyTo, err = one()
		case name == "subject":
			sub.in.Subject, err = one()
		case name == "text":
			sub.in.Text, err = one()
		case name == "html":
			sub.in.HTML, err = one()
		case name == "send_at":
			sub.sendAt, err = one()
		case name == "header":
			// header=X-Ticket: 4711 (repeatable)
			for _, h := range vs {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return nil, errValidation("header fields take `Name: value`", FieldError{Field: "header", Message: h})
				}
				if sub.in.Headers == nil {
					sub.in.Headers = map[string]string{}
				}
				sub.in.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		case name == "metadata":
			// metadata={"ticket":"4711"}: one JSON object
			var v string
			if v, err = one(); err == nil {
				if json.Unmarshal([]byte(v), &sub.metadata) != nil {
					return nil, errInvalidBody("metadata must be a JSON object of strings", FieldError{Field: "metadata", Message: "not a JSON object of strings"})
				}
			}
		case strings.HasPrefix(name, "metadata."):
			var v string
			if v, err = one(); err == nil {
				if sub.metadata == nil {
					sub.metadata = map[string]string{}
				}
				sub.metadata[strings.TrimPrefix(name, "metadata.")] = v
			}
		default:
			return nil, errInvalidBody("unknown form field "+name,
				FieldError{Field: name, Message: "not a field of POST /v1/messages"})
		}
		if err != nil {
			return nil, err
		}
	}
	if err := checkMetadata(sub.metadata); err != nil {
		return nil, err
	}
	return sub, nil
}

func appendAddrs(dst []string, field string, vs []string) ([]string, error) {
	for _, v := range vs {
		if err := checkListLength(field, v); err != nil {
			return nil, err
		}
		dst = append(dst, splitAddresses(v)...)
	}
	return dst, nil
}

func parseURLEncoded(body io.Reader, size int64) (*submission, error) {
	raw, err := readSized(body, size)
	if err != nil {
		return nil, err
	}
	if err := checkFieldCount("form", string(raw)); err != nil {
		return nil, err
	}
	values, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, errInvalidBody("malformed form: " + err.Error())
	}
	if err := validUTF8Values(values); err != nil {
		return nil, err
	}
	return formFields(values)
}

// parseMultipart streams the form: files go straight into attachments, and
// nothing is spilled to disk. A file is read into one buffer the size of
// what is left of the body (size, the Content-Length), which for the last
// or only file is about its size; other fields are small and read as they
// come.
func parseMultipart(body io.Reader, size int64, boundary string) (*submission, error) {
	if boundary == "" {
		return nil, errInvalidBody("multipart/form-data without a boundary")
	}
	cr := &countingReader{r: body}
	mr := multipart.NewReader(cr, boundary)
	values := map[string][]string{}
	var files []compose.Attachment
	for parts := 0; ; parts++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if parts == maxFormParts {
			return nil, errValidation(fmt.Sprintf("the form has more than %d parts", maxFormParts))
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, err
			}
			return nil, errInvalidBody("malformed multipart form: " + err.Error())
		}
		name := part.FormName()
		var data []byte
		if part.FileName() != "" || name == "attachment" || name == "inline" {
			// A part is at most what is left of the body and what the
			// multipart reader has buffered of it (4 KiB).
			left := int64(-1)
			if size >= 0 {
				left = size - cr.n + 4<<10
			}
			// The headroom covers the message's header and what was read
			// before this part (text, other files), rendered.
			data, err = readAttachment(part, left, int(cr.n)*3/2+16<<10)
		} else {
			data, err = io.ReadAll(part)
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, err
			}
			return nil, errInvalidBody("malformed multipart form: " + err.Error())
		}
		switch name {
		case "attachment", "inline":
			a := compose.Attachment{Filename: part.FileName(), ContentType: part.Header.Get("Content-Type"), Content: data, Owned: true}
			if a.ContentType == "application/octet-stream" {
				a.ContentType = "" // curl's default: let compose sniff a better one
			}
			if name == "inline" {
				a.ContentID = a.Filename
			}
			files = append(files, a)
		default:
			if part.FileName() != "" {
				return nil, errInvalidBody("file field "+name+" is not known; send files as attachment or inline",
					FieldError{Field: name, Message: "unknown file field"})
			}
			values[name] = append(values[name], string(data))
		}
	}
	if err := validUTF8Values(values); err != nil {
		return nil, err
	}
	sub, err := formFields(values)
	if err != nil {
		return nil, err
	}
	sub.in.Attachments = files
	return sub, nil
}

func validUTF8Values(values map[string][]string) error {
	for k, vs := range values {
		for _, v := range vs {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return errInvalidBody("form fields must be UTF-8", FieldError{Field: k, Message: "not UTF-8"})
			}
		}
	}
	return nil
}

// parsePlain is the one-liner: the body is the text, recipients and
// subject come from the query string or the Subject header.
func parsePlain(c *echo.Context, body io.Reader, size int64, charset string) (*submission, error) {
	if cs := strings.ToLower(charset); cs != "" && cs != "utf-8" && cs != "us-ascii" && cs != "utf8" {
		return nil, problem(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Unsupported media type",
			"text/plain bodies must be UTF-8 (charset="+charset+")")
	}
	raw, err := readSized(body, size)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(raw) {
		return nil, errInvalidBody("the body is not valid UTF-8")
	}
	q, err := query(c)
	if err != nil {
		return nil, err
	}
	allowed := map[string]bool{"to": true, "cc": true, "bcc": true, "from": true, "subject": true, "reply_to": true, "send_at": true}
	for k := range q {
		if !allowed[k] {
			return nil, errInvalidBody("unknown query parameter "+k, FieldError{Field: k, Message: "not a parameter of the text/plain one-liner"})
		}
	}
	sub, err := formFields(map[string][]string(q))
	if err != nil {
		return nil, err
	}
	if sub.in.Subject == "" {
		subj := c.Request().Header.Get("Subject")
		if dec, err := new(mime.WordDecoder).DecodeHeader(subj); err == nil {
			subj = dec
		}
		sub.in.Subject = subj
	}
	sub.in.Text = string(raw)
	return sub, nil
}

// query parses the query string, refusing one that does not parse (or has
// more parameters than net/url accepts) rather than reading it as empty.
func query(c *echo.Context) (url.Values, error) {
	if err := checkFieldCount("query string", c.Request().URL.RawQuery); err != nil {
		return nil, err
	}
	q, err := url.ParseQuery(c.Request().URL.RawQuery)
	if err != nil {
		return nil, errInvalidBody("malformed query string: " + err.Error())
	}
	return q, nil
}
