package sendmail

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
)

// ReadMessage reads a message from r the way sendmail does: every line
// ends in CRLF however it ended on stdin (cron, PHP and shell scripts write
// bare LF), a first line "From sender date" (an mbox separator) is dropped,
// and unless ignoreDots (-i, -oi) a line with a single dot ends the
// message.
func ReadMessage(r io.Reader, ignoreDots bool) ([]byte, error) {
	br := bufio.NewReader(r)
	var out bytes.Buffer
	for first := true; ; first = false {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read the message: %w", err)
		}
		if len(line) == 0 {
			break
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if !ignoreDots && bytes.Equal(line, []byte(".")) {
			break
		}
		if !(first && bytes.HasPrefix(line, []byte("From "))) {
			out.Write(line)
			out.WriteString("\r\n")
		}
		if err != nil {
			break
		}
	}
	return out.Bytes(), nil
}

// DataError is a message that cannot be sent as it is; it exits
// EX_DATAERR.
type DataError struct{ Msg string }

func (e *DataError) Error() string { return e.Msg }

// Prepared is a message ready for POST /v1/messages/raw.
type Prepared struct {
	Body []byte
	// To is the envelope (?to=), or nil to let the server take the
	// recipients from To, Cc and Bcc (-t without operands).
	To []string
}

// Prepare turns what a sendmail caller wrote into what the server takes:
//
//   - Local names in To, Cc and Bcc (cron writes "To: root") are
//     qualified by the configuration, so the header holds addresses the
//     server accepts.
//   - A From holding a local name ("root (Cron Daemon)") is removed: the
//     server then inserts the app's default From, which is what a host
//     without a mail domain means.
//   - A message without From gets one from -f and -F when -f is an address
//     (sendmail does the same); otherwise the server's default applies.
//   - The envelope is the operands, plus with -t the header's To, Cc and
//     Bcc (added, as Postfix does). With -t alone the server reads the
//     header itself and removes Bcc either way.
func Prepare(msg []byte, o Options, c Conf) (*Prepared, error) {
	fields, body := splitHeader(msg)

	from := -1
	for i := 0; i < len(fields); i++ {
		f := &fields[i]
		switch f.key {
		case "from":
			if _, local := localName(f.value()); local && len(fields[i].elements()) == 1 {
				fields = append(fields[:i], fields[i+1:]...)
				i--
				continue
			}
			from = i
		case "to", "cc", "bcc":
			if err := f.qualify(c); err != nil {
				return nil, err
			}
		}
	}
	if from < 0 && strings.Contains(o.Sender, "@") {
		a := mail.Address{Name: o.FullName, Address: o.Sender}
		fields = append([]field{newField("From", a.String())}, fields...)
	}

	var to []string
	seen := map[string]bool{}
	add := func(addrs ...string) {
		for _, a := range addrs {
			if k := strings.ToLower(a); !seen[k] {
				seen[k] = true
				to = append(to, a)
			}
		}
	}
	for _, r := range o.Recipients {
		addrs, err := c.Qualify(strings.TrimSpace(r))
		if err != nil {
			return nil, err
		}
		add(addrs...)
	}
	if o.Extract {
		headerRcpts := 0
		for _, f := range fields {
			if f.key != "to" && f.key != "cc" && f.key != "bcc" || strings.TrimSpace(f.value()) == "" {
				continue
			}
			headerRcpts++
			if len(o.Recipients) == 0 {
				continue // the server reads them
			}
			list, err := mail.ParseAddressList(f.value())
			if err != nil {
				return nil, &DataError{fmt.Sprintf("%s: %v", f.name, err)}
			}
			for _, a := range list {
				add(a.Address)
			}
		}
		if headerRcpts == 0 && len(to) == 0 {
			return nil, usagef("no recipient addresses found in the header (-t)")
		}
		if len(o.Recipients) == 0 {
			to = nil
		}
	} else if len(to) == 0 {
		return nil, usagef("no recipients: name them as arguments, or use -t to read To, Cc and Bcc")
	}

	var out bytes.Buffer
	out.Grow(len(msg) + 128)
	for _, f := range fields {
		out.Write(f.raw)
	}
	out.WriteString("\r\n")
	out.Write(body)
	return &Prepared{Body: out.Bytes(), To: to}, nil
}

// field is one header field as it came, folding included.
type field struct {
	name string // as written
	key  string // lower case
	raw  []byte // "Name: value\r\n" with continuation lines
}

func newField(name, value string) field {
	return field{name: name, key: strings.ToLower(name), raw: []byte(name + ": " + value + "\r\n")}
}

// value is the field's body, unfolded.
func (f field) value() string {
	_, v, _ := bytes.Cut(f.raw, []byte(":"))
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	return strings.TrimSpace(string(v))
}

// splitHeader splits a CRLF message into its header fields and its body.
// A message whose first line is not a header field is all body (sendmail
// accepts `echo hi | sendmail root`); a message without a blank line is all
// header.
func splitHeader(msg []byte) ([]field, []byte) {
	var fields []field
	rest := msg
	for len(rest) > 0 {
		end := bytes.Index(rest, []byte("\r\n"))
		if end < 0 {
			end = len(rest) // ReadMessage ends every line, but be safe
		} else {
			end += 2
		}
		line := rest[:end]
		switch {
		case bytes.Equal(line, []byte("\r\n")):
			return fields, rest[end:]
		case (line[0] == ' ' || line[0] == '\t') && len(fields) > 0:
			last := &fields[len(fields)-1]
			last.raw = append(last.raw, line...)
		default:
			name, _, ok := bytes.Cut(line, []byte(":"))
			if !ok || !validFieldName(name) {
				if len(fields) == 0 {
					return nil, msg
				}
				// A broken line inside the header: keep it, the server
				// explains what is wrong with it.
				fields[len(fields)-1].raw = append(fields[len(fields)-1].raw, line...)
				break
			}
			fields = append(fields, field{name: string(name), key: strings.ToLower(string(name)),
				raw: append([]byte(nil), line...)})
		}
		rest = rest[end:]
	}
	return fields, nil
}

// validFieldName is RFC 5322's field-name: printable ASCII but colon.
func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// elements splits an address list at the commas that separate addresses,
// not those inside quotes, comments or angle brackets.
func (f field) elements() []string {
	return splitList(f.value())
}

func splitList(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '(' || c == '<':
			depth++
		case (c == ')' || c == '>') && depth > 0:
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if last := strings.TrimSpace(s[start:]); last != "" || len(out) > 0 {
		out = append(out, last)
	}
	return out
}

// qualify rewrites the local names of an address field; the field is left
// byte for byte as it was when it holds none.
func (f *field) qualify(c Conf) error {
	elems := f.elements()
	changed := false
	for i, e := range elems {
		if e == "" {
			continue
		}
		name, local := localName(e)
		if !local {
			continue
		}
		addrs, err := c.Qualify(name.local)
		if err != nil {
			return err
		}
		if len(addrs) == 1 {
			elems[i] = name.with(addrs[0])
		} else {
			elems[i] = strings.Join(addrs, ", ")
		}
		changed = true
	}
	if changed {
		*f = newField(f.name, strings.Join(elems, ", "))
	}
	return nil
}

// local is a mailbox whose address has no domain, and where that address
// sits in the text of its list element.
type local struct {
	local         string
	before, after string
}

func (l local) with(addr string) string { return l.before + addr + l.after }

// localName reports whether e, one element of an address list, is a local
// name without a domain: "root", "root (Cron Daemon)", "Cron Daemon
// <root>", "\"(Cron Daemon)\" <root>". Anything else, valid or not, is left
// to the server to judge.
func localName(e string) (local, bool) {
	if _, err := mail.ParseAddress(e); err == nil || strings.Contains(e, ":") {
		return local{}, false // an address, or a group
	}
	if lt := strings.LastIndexByte(e, '<'); lt >= 0 {
		gt := strings.IndexByte(e[lt:], '>')
		if gt < 0 {
			return local{}, false
		}
		inner := strings.TrimSpace(e[lt+1 : lt+gt])
		if !isLocalPart(inner) {
			return local{}, false
		}
		return local{inner, e[:lt+1], e[lt+gt:]}, true
	}
	n := strings.IndexAny(e, " \t(")
	if n < 0 {
		n = len(e)
	}
	if !isLocalPart(e[:n]) {
		return local{}, false
	}
	return local{e[:n], "", e[n:]}, true
}

// isLocalPart reports whether s is a dot-atom local part (RFC 5322 3.2.3)
// with no domain.
func isLocalPart(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0) {
			return false
		}
	}
	return true
}
