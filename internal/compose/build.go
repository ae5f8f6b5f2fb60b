package compose

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/textproto"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"

	"github.com/mailgate/mailgate/internal/addrpolicy"
)

// Attachment is one file of a structured submission.
type Attachment struct {
	Filename string
	// ContentType is sniffed from the filename's extension, then from the
	// content (mime.TypeByExtension, http.DetectContentType) when empty.
	ContentType string
	// Content is not copied: Build base64-encodes it straight from this
	// slice into the rendered message.
	Content []byte
	// ContentID, when set, makes the part inline: it goes into the
	// multipart/related part next to the HTML, which refers to it as
	// "cid:<ContentID>". Without HTML it is an ordinary attachment.
	ContentID string
	// Owned tells Build that the caller is done with Content and that
	// nothing else refers to its array, up to cap(Content): Build may then
	// render the message in that array, overwriting Content, rather than
	// allocate one of the message's size (for a large attachment, a
	// third more than the attachment). It does when the array has the room:
	// see EncodedLen. Message.Bytes then shares the array.
	Owned bool
}

// Input is a structured submission (JSON, form or text/plain).
type Input struct {
	From        string   // "Name <a@b>" or "a@b"; required (the caller fills the app default before)
	To, Cc, Bcc []string // each entry is one address, "Name <a@b>" or "a@b"
	ReplyTo     string
	Subject     string
	Text, HTML  string            // at least one required
	Headers     map[string]string // extra headers
	Attachments []Attachment
}

// Options are the parts of a message that mailgate decides rather than the
// client.
type Options struct {
	// Now is the Date of a message that has none; the zero value means
	// time.Now().
	Now time.Time
	// MessageIDLocal is the left part of a Message-ID
	// <MessageIDLocal@domain-of-From> added when the message has none. Empty
	// means a random one. It must be an RFC 5322 dot-atom-text.
	MessageIDLocal string
	// MaxNesting is the deepest multipart nesting ParseRaw accepts
	// (default 20). It bounds the work a hostile message can cause.
	MaxNesting int
	// EnvelopeTo, for ParseRaw only, replaces the To, Cc and Bcc of the
	// header as the envelope recipients when non-empty (?to= on the API).
	EnvelopeTo []string
	// DefaultFrom, for ParseRaw only, is inserted as From when the raw
	// message has none (the app's from.default).
	DefaultFrom string
}

// DefaultMaxNesting is the multipart depth ParseRaw accepts when
// Options.MaxNesting is zero.
const DefaultMaxNesting = 20

// Message is a rendered message, ready to be queued and sent as it is.
type Message struct {
	From *mail.Address // the header From
	// Senders lists every address of a header that names a sender (From,
	// Sender, Resent-From, Resent-Sender), From first, each with the field
	// to name in a refusal. All must be within the app's From policy.
	Senders    []Sender
	To, Cc     []string // header addresses, formatted for display
	Recipients []string // envelope RCPT TO: bare addresses, domain lower-cased, deduplicated
	Subject    string   // decoded
	MessageID  string   // without angle brackets
	// OwnMessageID is set when a raw message brought its Message-ID (one
	// was not added): the message names itself (the SMTP door's retry key).
	OwnMessageID bool
	Bytes        []byte // the final message, CRLF line endings, no Bcc header
}

// Sender is one address of a header that names a sender.
type Sender struct {
	Field   string // "from", "headers.Sender", "headers.Resent-From", ...
	Address string // bare, domain lower-cased
}

// Limits on attachment metadata. A filename is written twice (Content-Type
// name and Content-Disposition filename), RFC 2047 encoded inside a quoted
// string, on lines go-mail does not fold; these keep both under 998 bytes.
const (
	maxFilename    = 255
	maxContentType = 200
	maxContentID   = 250
)

// Build checks a structured submission and renders it with go-mail.
//
// Problems with the input are returned as *Error; any other error is a
// fault of the caller's Options or of rendering.
func Build(in Input, opt Options) (*Message, error) {
	msg, err := build(in, opt)
	if err != nil {
		return nil, err
	}
	return msg, nil
}

// attachment is a checked Attachment.
type attachment struct {
	filename    string
	contentType string
	contentID   string
	content     []byte
	owned       bool
}

func build(in Input, opt Options) (*Message, error) {
	if in.From == "" {
		return nil, invalid("from", "is required")
	}
	from, e := parseAddress(in.From)
	if e != nil {
		return nil, withField(e, "from")
	}
	to, e := parseAddresses("to", in.To)
	if e != nil {
		return nil, e
	}
	cc, e := parseAddresses("cc", in.Cc)
	if e != nil {
		return nil, e
	}
	bcc, e := parseAddresses("bcc", in.Bcc)
	if e != nil {
		return nil, e
	}
	var replyTo *mail.Address
	if in.ReplyTo != "" {
		if replyTo, e = parseAddress(in.ReplyTo); e != nil {
			return nil, withField(e, "reply_to")
		}
	}
	recipients := dedupe(to, cc, bcc)
	if len(recipients) == 0 {
		return nil, invalid("to", "at least one recipient (to, cc or bcc) is required")
	}
	subject := addrpolicy.SqueezeSpace(in.Subject)
	if msg := checkHeaderValue("Subject", subject); msg != "" {
		return nil, invalid("subject", "%s", msg)
	}
	if in.Text == "" && in.HTML == "" {
		return nil, invalid("text", "text or html is required")
	}
	if !utf8.ValidString(in.Text) {
		return nil, invalid("text", "is not valid UTF-8")
	}
	if !utf8.ValidString(in.HTML) {
		return nil, invalid("html", "is not valid UTF-8")
	}
	headerNames, e := checkHeaders(in.Headers)
	if e != nil {
		return nil, e
	}
	atts, e := checkAttachments(in.Attachments)
	if e != nil {
		return nil, e
	}
	msgID, err := messageID(opt.MessageIDLocal, from)
	if err != nil {
		return nil, err
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}

	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	m.SetAddrHeaderFromMailAddress(gomail.HeaderFrom, from)
	if len(to) > 0 {
		m.SetAddrHeaderFromMailAddress(gomail.HeaderTo, to...)
	}
	if len(cc) > 0 {
		m.SetAddrHeaderFromMailAddress(gomail.HeaderCc, cc...)
	}
	// Bcc is deliberately not given to go-mail: it lives only in Recipients.
	if replyTo != nil {
		m.SetAddrHeaderFromMailAddress(gomail.HeaderReplyTo, replyTo)
	}
	if subject != "" {
		m.Subject(subject)
	}
	m.SetDateWithValue(now)
	m.SetMessageIDWithValue(msgID)
	for _, name := range headerNames {
		m.SetGenHeader(gomail.Header(name), addrpolicy.SqueezeSpace(in.Headers[name]))
	}

	// The text and HTML go in as tokens too (newTextBody), before the
	// embeds and the attachments, which is the order go-mail writes them in
	// and splice takes the bodies in.
	var textBodies []*attachmentBody
	textPart := func(s string) func(io.Writer) (int64, error) {
		body := newTextBody(s)
		textBodies = append(textBodies, body)
		return bytesWriter(body.mark)
	}
	switch {
	case in.Text != "" && in.HTML != "":
		m.SetBodyWriter(gomail.TypeTextPlain, textPart(in.Text))
		m.AddAlternativeWriter(gomail.TypeTextHTML, textPart(in.HTML))
	case in.Text != "":
		m.SetBodyWriter(gomail.TypeTextPlain, textPart(in.Text))
	default:
		m.SetBodyWriter(gomail.TypeTextHTML, textPart(in.HTML))
	}

	var files, embeds []*gomail.File
	var embedBodies, fileBodies []*attachmentBody
	for _, a := range atts {
		body, token := newAttachmentBody(a.content)
		body.owned = a.owned
		f := &gomail.File{
			Name:        a.filename,
			ContentType: gomail.ContentType(a.contentType),
			Header:      textproto.MIMEHeader{},
			Writer:      bytesWriter(token),
		}
		if a.contentID != "" {
			f.Header.Set("Content-ID", "<"+a.contentID+">")
		}
		// Inline parts only make sense next to HTML that can refer to
		// them; without HTML they travel as attachments.
		if a.contentID != "" && in.HTML != "" {
			embeds = append(embeds, f)
			embedBodies = append(embedBodies, body)
		} else {
			files = append(files, f)
			fileBodies = append(fileBodies, body)
		}
	}
	m.SetEmbeds(embeds)
	m.SetAttachments(files)

	// Without the bodies the rendering is small: the header (a few hundred
	// bytes, and its values up to three times over once encoded), part
	// headers and boundaries. The buffer grows if that is not enough.
	header := len(subject) + len(in.From) + len(in.ReplyTo)
	for _, l := range [][]string{in.To, in.Cc} {
		for _, a := range l {
			header += len(a)
		}
	}
	for name, v := range in.Headers {
		header += len(name) + len(v)
	}
	var buf bytes.Buffer
	buf.Grow(512 + 3*header + 512*(len(textBodies)+len(atts)))
	if _, err := m.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("compose: render message: %w", err)
	}
	out, err := splice(buf.Bytes(), append(append(textBodies, embedBodies...), fileBodies...), 2)
	if err != nil {
		return nil, fmt.Errorf("compose: render message: %w", err)
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	// go-mail should only ever produce short CRLF lines from the input
	// checked above; this is the guarantee the SMTP sender relies on.
	if err := checkLines(out); err != nil {
		return nil, fmt.Errorf("compose: rendered message: %w", err)
	}

	return &Message{
		From:       from,
		Senders:    []Sender{{Field: "from", Address: from.Address}},
		To:         displayList(to),
		Cc:         displayList(cc),
		Recipients: recipients,
		Subject:    subject,
		MessageID:  msgID,
		Bytes:      out,
	}, nil
}

func bytesWriter(b []byte) func(io.Writer) (int64, error) {
	return func(w io.Writer) (int64, error) {
		n, err := w.Write(b)
		return int64(n), err
	}
}

func parseAddresses(field string, list []string) ([]*mail.Address, *Error) {
	out := make([]*mail.Address, 0, len(list))
	for i, s := range list {
		a, e := parseAddress(s)
		if e != nil {
			return nil, withField(e, fmt.Sprintf("%s[%d]", field, i))
		}
		out = append(out, a)
	}
	return out, nil
}

// dedupe returns the bare addresses of all lists, each once, in order of
// first appearance. Domains are already lower-case; local parts are
// compared as they are, since RFC 5321 section 2.4 lets the receiving
// server decide whether case matters there.
func dedupe(lists ...[]*mail.Address) []string {
	seen := make(map[string]bool)
	var out []string
	for _, l := range lists {
		for _, a := range l {
			if !seen[a.Address] {
				seen[a.Address] = true
				out = append(out, a.Address)
			}
		}
	}
	return out
}

func displayList(l []*mail.Address) []string {
	if len(l) == 0 {
		return nil
	}
	out := make([]string, len(l))
	for i, a := range l {
		out[i] = displayAddress(a)
	}
	return out
}

// checkHeaders checks the extra headers and returns their names sorted, so
// that errors and output do not depend on map order.
func checkHeaders(h map[string]string) ([]string, *Error) {
	if len(h) > MaxCustomHeaders {
		return nil, invalid("headers", "has %d headers; at most %d extra headers are allowed", len(h), MaxCustomHeaders)
	}
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	sort.Strings(names)
	seen := make(map[string]string, len(names))
	for _, name := range names {
		field := "headers." + name
		if msg := checkFieldName(name); msg != "" {
			return nil, invalid(field, "%s", msg)
		}
		if ownedHeader(name) {
			return nil, invalid(field, "is set by mailgate and cannot be given as an extra header")
		}
		lower := strings.ToLower(name)
		if prev, ok := seen[lower]; ok {
			return nil, invalid(field, "is given twice (also as %q)", prev)
		}
		seen[lower] = name
		if msg := checkHeaderValue(name, h[name]); msg != "" {
			return nil, invalid(field, "%s", msg)
		}
	}
	return names, nil
}

func checkAttachments(list []Attachment) ([]attachment, *Error) {
	if len(list) > MaxAttachments {
		return nil, invalid("attachments", "has %d attachments; at most %d are allowed", len(list), MaxAttachments)
	}
	out := make([]attachment, 0, len(list))
	cids := make(map[string]int)
	for i, a := range list {
		field := fmt.Sprintf("attachments[%d]", i)
		cid := strings.TrimSuffix(strings.TrimPrefix(a.ContentID, "<"), ">")
		if a.ContentID != "" {
			if msg := checkContentID(cid); msg != "" {
				return nil, invalid(field+".content_id", "%s", msg)
			}
			if j, ok := cids[cid]; ok {
				return nil, invalid(field+".content_id", "is already used by attachments[%d]", j)
			}
			cids[cid] = i
		}
		name := a.Filename
		if name == "" {
			name = cid
		}
		if name == "" {
			return nil, invalid(field+".filename", "is required")
		}
		if msg := controlChar(name); msg != "" {
			return nil, invalid(field+".filename", "%s", msg)
		}
		if !utf8.ValidString(name) {
			return nil, invalid(field+".filename", "is not valid UTF-8")
		}
		if len(name) > maxFilename {
			return nil, invalid(field+".filename", "is longer than %d bytes", maxFilename)
		}
		ct, e := attachmentType(a, name)
		if e != nil {
			return nil, withField(e, field+".content_type")
		}
		// go-mail writes the name RFC 2047 encoded, unfolded, into both
		// part headers; refuse what would not fit on a line.
		enc := len(mime.QEncoding.Encode("UTF-8", name))
		if len("Content-Disposition: attachment; filename=\"\"")+enc > maxLine ||
			len("Content-Type: ; name=\"\"")+len(ct)+enc > maxLine {
			return nil, invalid(field+".filename", "is too long once encoded for the header")
		}
		out = append(out, attachment{filename: name, contentType: ct, contentID: cid, content: a.Content, owned: a.Owned})
	}
	return out, nil
}

// checkContentID accepts what a cid: URL can name (RFC 2392): an id-left or
// msg-id without the angle brackets, made of atext, '.' and '@'.
func checkContentID(cid string) string {
	if msg := controlChar(cid); msg != "" {
		return msg
	}
	if cid == "" || len(cid) > maxContentID {
		return fmt.Sprintf("must be 1 to %d characters", maxContentID)
	}
	for i := 0; i < len(cid); i++ {
		if c := cid[i]; c != '.' && c != '@' && !isAtext(c) {
			return "may contain only letters, digits, '.', '@' and !#$%&'*+-/=?^_`{|}~"
		}
	}
	return ""
}

// attachmentType returns the checked media type of a, without a name
// parameter (go-mail adds its own).
func attachmentType(a Attachment, name string) (string, *Error) {
	ct := a.ContentType
	sniffed := ct == ""
	if sniffed {
		ct = mime.TypeByExtension(filepath.Ext(name))
		if ct == "" {
			ct = http.DetectContentType(a.Content)
		}
	}
	if msg := controlChar(ct); msg != "" {
		return "", invalid("", "%s", msg)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mt, "/") {
		return "", invalid("", "%q is not a media type like application/pdf", ct)
	}
	// RFC 2046 sections 5.1 and 5.2.1: multipart and message/rfc822 parts
	// may not be base64-encoded, and attachments always are.
	if strings.HasPrefix(mt, "multipart/") || strings.HasPrefix(mt, "message/") {
		if !sniffed {
			return "", invalid("", "%s cannot be attached; use application/octet-stream", mt)
		}
		mt, params = "application/octet-stream", nil
	}
	delete(params, "name")
	out := mime.FormatMediaType(mt, params)
	if out == "" {
		return "", invalid("", "%q is not a media type like application/pdf", ct)
	}
	if len(out) > maxContentType {
		return "", invalid("", "is longer than %d bytes", maxContentType)
	}
	return out, nil
}

// messageID returns local@domain-of-from, with a random local part when
// none is given.
func messageID(local string, from *mail.Address) (string, error) {
	if local == "" {
		local = rand.Text()
	}
	if len(local) > 200 || !isDotAtom(local) {
		return "", fmt.Errorf("compose: Options.MessageIDLocal %q is not a dot-atom-text", local)
	}
	return local + "@" + from.Address[strings.LastIndexByte(from.Address, '@')+1:], nil
}

// checkLines verifies that b uses CRLF line endings only, that no line is
// longer than RFC 5322 allows and that no header line is only whitespace.
func checkLines(b []byte) error {
	inHeader := true
	for line := 1; len(b) > 0; line++ {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			i = len(b)
		}
		l := b[:i]
		if i == len(b) || i == 0 || l[i-1] != '\r' {
			return fmt.Errorf("line %d does not end with CRLF", line)
		}
		l = l[:i-1]
		if len(l) > maxLine {
			return fmt.Errorf("line %d is %d bytes long, more than %d", line, len(l), maxLine)
		}
		if bytes.IndexByte(l, '\r') >= 0 {
			return fmt.Errorf("line %d contains a bare CR", line)
		}
		if inHeader && len(l) > 0 && len(bytes.Trim(l, " \t")) == 0 {
			return fmt.Errorf("header line %d is only whitespace", line)
		}
		inHeader = inHeader && len(l) > 0
		b = b[i+1:]
	}
	return nil
}
