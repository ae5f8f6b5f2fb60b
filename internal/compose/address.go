package compose

import (
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// Limits from RFC 5321 section 4.5.3.1: 64 bytes of local part, 255 of
// domain, 256 for the whole path including the angle brackets.
const (
	maxLocalPart = 64
	maxDomain    = 253 // the longest name DNS can carry, in text form
	maxAddress   = 254
	// maxDisplayName keeps a From or To header with one address foldable
	// under the 998-byte line limit once the name is RFC 2047 encoded.
	maxDisplayName = 256
)

// ParseAddress parses one mailbox, "a@b.example" or "Name <a@b.example>".
//
// On top of net/mail's RFC 5322 syntax it requires: exactly one address (no
// list, no group), no control characters anywhere (a CR or LF would start a
// new header), a dot-atom local part and a domain of at least two LDH labels,
// in ASCII (mailgate does not do SMTPUTF8), and a display name that does not
// itself contain '@', '<' or '>' unless it is the address itself. The domain
// of the result is lower-cased; the local part is kept as given.
//
// The error is an *Error with code validation_failed and an empty Field: the
// caller knows which field it parsed.
func ParseAddress(s string) (*mail.Address, error) {
	a, err := parseAddress(s)
	if err != nil {
		return nil, err
	}
	return a, nil
}

func parseAddress(s string) (*mail.Address, *Error) {
	if msg := controlChar(s); msg != "" {
		return nil, invalid("", "%s", msg)
	}
	if !utf8.ValidString(s) {
		return nil, invalid("", "is not valid UTF-8")
	}
	s = strings.Trim(s, " \t")
	if s == "" {
		return nil, invalid("", "is empty")
	}
	if len(s) > 998 {
		return nil, invalid("", "is too long (%d bytes)", len(s))
	}
	if msg := singleMailbox(s); msg != "" {
		return nil, invalid("", "%s", msg)
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, invalid("", "is not a valid address: %v", trimMailErr(err))
	}
	if msg := checkMailbox(a, false); msg != "" {
		return nil, invalid("", "%s", msg)
	}
	return a, nil
}

// rawAddressParser parses addresses found in the header of a raw message.
// Unlike ParseAddress it must not fail on a display name encoded in a
// charset Go does not know (ISO-2022-JP is common): such a name is only shown
// in the status, the header itself is sent as it came.
func rawAddressParser() *mail.AddressParser {
	return &mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
	}}
}

// parseRawMailbox parses the From field of a raw message: one mailbox, with
// the same rules as ParseAddress except that the display name may be in any
// charset.
func parseRawMailbox(s string) (*mail.Address, *Error) {
	s = strings.Trim(s, " \t")
	if s == "" {
		return nil, invalid("", "is empty")
	}
	if msg := singleMailbox(s); msg != "" {
		return nil, invalid("", "%s", msg)
	}
	a, err := rawAddressParser().Parse(s)
	if err != nil {
		return nil, invalid("", "is not a valid address: %v", trimMailErr(err))
	}
	if msg := checkMailbox(a, true); msg != "" {
		return nil, invalid("", "%s", msg)
	}
	return a, nil
}

// parseRawList parses a To, Cc or Bcc field of a raw message. Groups are
// allowed there ("undisclosed-recipients:;" is the usual way to say "Bcc
// only") and only the addr-spec is checked: display names of recipients
// cannot fake the sender.
func parseRawList(s string) ([]*mail.Address, *Error) {
	if strings.Trim(s, " \t") == "" {
		return nil, nil
	}
	list, err := rawAddressParser().ParseList(s)
	if err != nil {
		return nil, invalid("", "is not a valid address list: %v", trimMailErr(err))
	}
	for _, a := range list {
		addr, msg := checkAddrSpec(a.Address)
		if msg != "" {
			return nil, invalid("", "%q: %s", a.Address, msg)
		}
		a.Address = addr
		a.Name = cleanName(a.Name)
	}
	return list, nil
}

func trimMailErr(err error) string {
	return strings.TrimPrefix(err.Error(), "mail: ")
}

// checkMailbox normalises a.Address and returns what is wrong with a, or "".
// raw relaxes the display name rules for names decoded from a raw header,
// which may come from any charset and are not re-rendered.
func checkMailbox(a *mail.Address, raw bool) string {
	addr, msg := checkAddrSpec(a.Address)
	if msg != "" {
		return msg
	}
	a.Address = addr
	if raw {
		a.Name = cleanName(a.Name)
	} else {
		// An RFC 2047 encoded word can decode to anything, CR LF included.
		if msg := controlChar(a.Name); msg != "" {
			return "display name " + msg
		}
		if !utf8.ValidString(a.Name) {
			return "display name is not valid UTF-8"
		}
		a.Name = squeezeSpace(a.Name)
		if len(a.Name) > maxDisplayName {
			return "display name is too long"
		}
	}
	if strings.ContainsAny(a.Name, "@<>") && !strings.EqualFold(strings.Trim(a.Name, " \t"), a.Address) {
		return "display name must not contain '@', '<' or '>': it would show as another address"
	}
	return ""
}

// checkAddrSpec returns the address with its domain lower-cased, or what is
// wrong with it.
func checkAddrSpec(addr string) (string, string) {
	if len(addr) > maxAddress {
		return "", "address is too long"
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", "address has no domain"
	}
	local, domain := addr[:at], addr[at+1:]
	for i := 0; i < len(addr); i++ {
		if addr[i] >= utf8.RuneSelf {
			return "", "address must be ASCII (internationalised addresses are not supported)"
		}
	}
	if local == "" || len(local) > maxLocalPart {
		return "", "local part must be 1 to 64 characters"
	}
	if !isDotAtom(local) {
		return "", "local part must be a dot-atom (quoted local parts are not supported)"
	}
	if msg := checkDomain(domain); msg != "" {
		return "", msg
	}
	return local + "@" + strings.ToLower(domain), ""
}

// checkDomain requires a host name: two or more labels of letters, digits
// and hyphens (RFC 1035 section 2.3.1, RFC 5321 section 4.1.2), and a
// top-level label that is not all digits so that IP addresses are refused.
func checkDomain(d string) string {
	if d == "" || len(d) > maxDomain {
		return "domain must be 1 to 253 characters"
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return "domain must have at least two labels (like example.com)"
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "domain labels must be 1 to 63 characters"
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "domain labels must not start or end with '-'"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "domain may contain only letters, digits, '-' and '.'"
			}
		}
	}
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return "domain must be a host name, not an IP address"
	}
	return ""
}

// isDotAtom reports whether s is an RFC 5322 dot-atom-text.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && !isAtext(s[i]) {
			return false
		}
	}
	return true
}

// isAtext reports whether c is an RFC 5322 atext character (ASCII only).
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// singleMailbox looks for the structure net/mail would otherwise accept
// quietly: a group ("Team: a@b.example;" parses as a@b.example) or a list.
// Quoted strings, comments and domain literals are skipped.
func singleMailbox(s string) string {
	depth := 0 // comment nesting
	inQuote, inLiteral := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (inQuote || depth > 0):
			i++
		case inQuote:
			inQuote = c != '"'
		case depth > 0:
			if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
		case inLiteral:
			inLiteral = c != ']'
		case c == '"':
			inQuote = true
		case c == '(':
			depth++
		case c == '[':
			inLiteral = true
		case c == ':' || c == ';':
			return "must be a single mailbox, not a group"
		case c == ',':
			return "must be exactly one address"
		}
	}
	return ""
}

// controlChar describes the first control character in s, or returns "".
// TAB is allowed: it is whitespace in header values (RFC 5322 WSP).
func controlChar(s string) string {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r' || c == '\n':
			return "contains a line break (header injection)"
		case c == 0:
			return "contains a NUL byte (header injection)"
		case c < ' ' && c != '\t' || c == 0x7f:
			return "contains a control character (header injection)"
		}
	}
	return ""
}

// cleanName makes a display name decoded from a raw header safe to show:
// valid UTF-8 without control characters.
func cleanName(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// displayAddress formats a for people: the display name stays readable UTF-8
// (RFC 6532 style) instead of RFC 2047 words, quoted when it needs to be so
// that the result still parses as one mailbox.
func displayAddress(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	plain := true
	for i := 0; i < len(a.Name); i++ {
		c := a.Name[i]
		if c != ' ' && c < utf8.RuneSelf && !isAtext(c) {
			plain = false
			break
		}
	}
	if plain {
		return a.Name + " <" + a.Address + ">"
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(a.Name) + `" <` + a.Address + ">"
}
