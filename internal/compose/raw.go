package compose

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message"
	gmail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/mailgate/mailgate/internal/addrpolicy"
)

// ParseRaw checks a complete MIME message and prepares it for sending.
//
// Line endings are normalised to CRLF first. The header must parse and end
// with a blank line, with no line over 998 bytes and no control characters;
// the entity tree is then read to the end, so broken multipart framing,
// invalid base64 or quoted-printable and multipart nesting deeper than
// Options.MaxNesting are refused as invalid_body. Text in a charset Go does
// not know is fine: it is sent as it came.
//
// The From field must hold exactly one mailbox; when there is none,
// Options.DefaultFrom is inserted. Every Bcc (and Resent-Bcc) field is
// removed; its addresses stay in Recipients. Message-ID, Date and
// MIME-Version are added when missing, and kept when present. Only the
// header is re-serialised: the body in Message.Bytes is the body that was
// submitted.
func ParseRaw(raw []byte, opt Options) (*Message, error) {
	msg, err := parseRaw(raw, opt)
	if err != nil {
		return nil, err
	}
	return msg, nil
}

func parseRaw(raw []byte, opt Options) (*Message, error) {
	data := normaliseCRLF(raw)
	if n := countHeaderFields(data, MaxHeaderFields); n > MaxHeaderFields {
		return nil, malformed("", "the header has more than %d fields", MaxHeaderFields)
	}

	rd := bytes.NewReader(data)
	br := bufio.NewReader(rd)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, malformed("", "malformed header: %v", err)
	}
	headerLen := len(data) - rd.Len() - br.Buffered()
	// go-message returns without an error at EOF, and silently skips a
	// line with an empty field name; both would change the message.
	if !bytes.HasSuffix(data[:headerLen], []byte("\r\n\r\n")) && !bytes.Equal(data[:headerLen], []byte("\r\n")) {
		return nil, malformed("", "the header is not followed by a blank line (truncated message?)")
	}
	if e := checkRawHeader(h, headerLen-2, ""); e != nil {
		return nil, e
	}
	body := data[headerLen:]

	maxNesting := opt.MaxNesting
	if maxNesting <= 0 {
		maxNesting = DefaultMaxNesting
	}
	// New fails only on an unknown charset or transfer encoding, and then
	// still returns the entity, reading the body undecoded.
	ent, _ := message.New(message.Header{Header: h}, bytes.NewReader(body))
	parts := 0
	if e := checkEntity(ent, "", 0, maxNesting, &parts); e != nil {
		return nil, e
	}

	for f := h.Fields(); f.Next(); {
		if trustedHeader(f.Key()) {
			return nil, invalid("headers."+f.Key(), "header %s vouches for spam filtering or "+
				"authentication results, which only Exchange Online may set", f.Key())
		}
	}

	from, e := rawFrom(&h, opt.DefaultFrom)
	if e != nil {
		return nil, e
	}
	senders, e := rawSenders(h, from)
	if e != nil {
		return nil, e
	}
	for _, name := range []string{"Return-Path", "Received", "DKIM-Signature"} {
		h.Del(name) // see traceHeader
	}
	to, e := rawList(h, "To")
	if e != nil {
		return nil, e
	}
	cc, e := rawList(h, "Cc")
	if e != nil {
		return nil, e
	}
	bcc, e := rawList(h, "Bcc")
	if e != nil {
		return nil, e
	}
	var recipients []string
	if len(opt.EnvelopeTo) > 0 {
		env, e := parseAddresses("to", opt.EnvelopeTo)
		if e != nil {
			return nil, e
		}
		recipients = dedupe(env)
	} else {
		recipients = dedupe(to, cc, bcc)
	}
	if len(recipients) == 0 {
		return nil, invalid("to", "the message has no recipient (no To, Cc or Bcc address and no ?to=)")
	}

	h.Del("Bcc")
	h.Del("Resent-Bcc")

	msgID, own, err := rawMessageID(&h, opt.MessageIDLocal, from)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(h.Get("Date")) == "" {
		now := opt.Now
		if now.IsZero() {
			now = time.Now()
		}
		h.Del("Date")
		// The layout of RFC 5322 section 3.3 (and of RFC 1123).
		h.AddRaw([]byte("Date: " + now.Format(time.RFC1123Z) + "\r\n"))
	}
	if !h.Has("Mime-Version") {
		h.AddRaw([]byte("MIME-Version: 1.0\r\n"))
	}

	var out bytes.Buffer
	out.Grow(headerLen + 256 + len(body) + 2)
	if err := textproto.WriteHeader(&out, h); err != nil {
		return nil, fmt.Errorf("compose: write header: %w", err)
	}
	out.Write(body)
	b := out.Bytes()
	if len(body) > 0 && !bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(b, '\r', '\n')
	}

	mh := gmail.Header{Header: message.Header{Header: h}}
	subject, err := mh.Subject()
	if err != nil {
		subject = h.Get("Subject")
	}

	return &Message{
		From:         from,
		Senders:      senders,
		To:           displayList(to),
		Cc:           displayList(cc),
		Recipients:   recipients,
		Subject:      cleanName(subject),
		MessageID:    msgID,
		OwnMessageID: own,
		Bytes:        b,
	}, nil
}

// normaliseCRLF turns every bare LF and bare CR into CRLF. It returns b
// itself when there is nothing to change, since raw messages can be large.
func normaliseCRLF(b []byte) []byte {
	bare := 0
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') || c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			bare++
		}
	}
	if bare == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+bare)
	for i, c := range b {
		switch {
		case c == '\n' && (i == 0 || b[i-1] != '\r'):
			out = append(out, '\r', '\n')
		case c == '\r' && (i+1 == len(b) || b[i+1] != '\n'):
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// checkRawHeader checks the fields of a header: no line over 998 bytes and
// no control characters. part is "" for the message header, whose fields
// are then named in Error.Field, or the part's path. size is the length of
// the message header without its blank line, or -1 for part headers, whose
// raw length is not known: it catches lines that go-message dropped.
func checkRawHeader(h textproto.Header, size int, part string) *Error {
	fail := func(key, format string, args ...any) *Error {
		if part == "" {
			return malformed("headers."+key, format, args...)
		}
		return malformed("", "part %s: header %s %s", part, key, fmt.Sprintf(format, args...))
	}
	total := 0
	fields := h.Fields()
	for fields.Next() {
		raw, err := fields.Raw()
		if err != nil {
			return fail(fields.Key(), "%v", err)
		}
		total += len(raw)
		for _, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\r\n")), []byte("\r\n")) {
			if len(line) > maxLine {
				return fail(fields.Key(), "has a line of %d bytes; RFC 5322 allows %d", len(line), maxLine)
			}
			// RFC 5322 section 4.2 forbids generating these; a parser on
			// the way that takes one for the end of the header would see
			// another message than the one checked here.
			if part == "" && len(bytes.Trim(line, " \t")) == 0 {
				return fail(fields.Key(), "has a line made only of whitespace")
			}
			for _, c := range line {
				if c < ' ' && c != '\t' || c == 0x7f {
					return fail(fields.Key(), "contains a control character")
				}
			}
		}
	}
	if size >= 0 && total != size {
		return malformed("", "the header has a malformed line")
	}
	return nil
}

// checkEntity checks one entity and, for a multipart, all of its parts,
// depth-first. Reading each leaf to EOF through go-message's decoders is
// what finds invalid base64 or quoted-printable and unterminated parts.
// depth is the number of multipart levels above ent; parts counts the
// entities met so far, for MaxParts.
func checkEntity(ent *message.Entity, path string, depth, maxNesting int, parts *int) *Error {
	where := "the message"
	if path != "" {
		where = "part " + path
	}
	isMultipart, e := checkContentType(ent.Header, where)
	if e != nil {
		return e
	}
	if !isMultipart {
		if _, err := io.Copy(io.Discard, ent.Body); err != nil {
			return malformed("", "%s: %s", where, describeReadErr(ent.Header, err))
		}
		return nil
	}
	if depth+1 > maxNesting {
		return malformed("", "%s: multipart nesting is deeper than %d levels", where, maxNesting)
	}
	mr := ent.MultipartReader()
	n := 0
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		// NextPart returns the part along with these two: the part is
		// then read undecoded, which is what will be sent anyway.
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return malformed("", "%s: malformed multipart: %v", where, err)
		}
		n++
		if *parts++; *parts > MaxParts {
			return malformed("", "the message has more than %d MIME parts", MaxParts)
		}
		sub := fmt.Sprint(n)
		if path != "" {
			sub = path + "." + sub
		}
		if part.Header.Len() > MaxHeaderFields {
			return malformed("", "part %s: the header has more than %d fields", sub, MaxHeaderFields)
		}
		if e := checkRawHeader(part.Header.Header, -1, sub); e != nil {
			return e
		}
		if e := checkEntity(part, sub, depth+1, maxNesting, parts); e != nil {
			return e
		}
	}
	if n == 0 {
		// RFC 2046 section 5.1.1: one or more body parts.
		return malformed("", "%s: multipart has no parts", where)
	}
	return nil
}

// checkContentType refuses a Content-Type that go-message would misread:
// unparseable, or multipart without a boundary (RFC 2046 section 5.1.1).
// go-message itself ignores such errors and guesses.
func checkContentType(h message.Header, where string) (bool, *Error) {
	v := h.Get("Content-Type")
	if v == "" {
		return false, nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return false, malformed("", "%s: Content-Type %q: %v", where, v, err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return false, nil
	}
	if err != nil {
		return false, malformed("", "%s: Content-Type %q: %v", where, v, err)
	}
	if params["boundary"] == "" {
		return false, malformed("", "%s: multipart without a boundary", where)
	}
	return true, nil
}

// describeReadErr says why a body could not be read to its end.
func describeReadErr(h message.Header, err error) string {
	enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end (truncated part, unterminated multipart or incomplete encoding)"
	case enc == "base64" || enc == "quoted-printable":
		return fmt.Sprintf("invalid %s content: %v", enc, err)
	}
	return err.Error()
}

// rawFrom checks the From field, or inserts def when there is none.
func rawFrom(h *textproto.Header, def string) (*mail.Address, *Error) {
	values := h.Values("From")
	switch len(values) {
	case 0:
		if def == "" {
			return nil, invalid("headers.From", "the message has no From and the app has no default")
		}
		a, e := parseAddress(def)
		if e != nil {
			return nil, withField(e, "from")
		}
		// Add folds the field; mail.Address.String RFC 2047-encodes the name.
		h.Add("From", a.String())
		return a, nil
	case 1:
		a, e := parseRawMailbox(values[0])
		if e != nil {
			return nil, withField(e, "headers.From")
		}
		return a, nil
	default:
		return nil, invalid("headers.From", "the message has %d From fields; exactly one is allowed", len(values))
	}
}

// rawSenders parses the fields that name a sender besides From (see
// senderHeader) and returns every sender address, From first. Sender is one
// mailbox in at most one field (RFC 5322 section 3.6.2); Resent-From and
// Resent-Sender may repeat, one per resent block (section 3.6.6), and
// Resent-From may list several mailboxes.
func rawSenders(h textproto.Header, from *mail.Address) ([]Sender, *Error) {
	out := []Sender{{Field: "from", Address: from.Address}}
	if n := len(h.Values("Sender")); n > 1 {
		return nil, invalid("headers.Sender", "the message has %d Sender fields; at most one is allowed", n)
	}
	for _, key := range []string{"Sender", "Resent-Sender"} {
		for _, v := range h.Values(key) {
			a, e := parseRawMailbox(v)
			if e != nil {
				return nil, withField(e, "headers."+key)
			}
			out = append(out, Sender{Field: "headers." + key, Address: a.Address})
		}
	}
	for _, v := range h.Values("Resent-From") {
		list, e := parseRawList(v)
		if e != nil {
			return nil, withField(e, "headers.Resent-From")
		}
		if len(list) == 0 {
			return nil, invalid("headers.Resent-From", "is empty")
		}
		for _, a := range list {
			if err := addrpolicy.CheckDisplayName(a.Name, a.Address); err != nil {
				return nil, invalid("headers.Resent-From", "%s", err.Error())
			}
			out = append(out, Sender{Field: "headers.Resent-From", Address: a.Address})
		}
	}
	return out, nil
}

func rawList(h textproto.Header, key string) ([]*mail.Address, *Error) {
	var out []*mail.Address
	for _, v := range h.Values(key) {
		l, e := parseRawList(v)
		if e != nil {
			return nil, withField(e, "headers."+key)
		}
		out = append(out, l...)
	}
	return out, nil
}

// rawMessageID keeps an existing Message-ID (own is true), or adds one.
func rawMessageID(h *textproto.Header, local string, from *mail.Address) (id string, own bool, err error) {
	if v := strings.TrimSpace(h.Get("Message-Id")); v != "" {
		mh := gmail.Header{Header: message.Header{Header: *h}}
		if id, err := mh.MessageID(); err == nil && id != "" {
			return id, true, nil
		}
		return strings.Trim(v, "<> \t"), true, nil
	}
	id, err = messageID(local, from)
	if err != nil {
		return "", false, err
	}
	h.Del("Message-Id")
	h.AddRaw([]byte("Message-ID: <" + id + ">\r\n"))
	return id, false, nil
}
