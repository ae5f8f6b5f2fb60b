package addrpolicy

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
)

// This file is mailgate's one address parser: the API's fields, the headers
// of a raw message, the configuration's from.default and the patterns above
// all go through the rules below, so an address the configuration accepts is
// never refused at the door and the other way round.
//
// The rules, and the differences between former copies they settle:
//
//   - The domain needs two or more labels and a top-level label that is not
//     all digits: "localhost" and "192.0.2.1" are refused everywhere, in
//     patterns too. Exchange Online routes by registered domains only, so a
//     pattern *@localhost could only ever match addresses the door refuses.
//   - The whole address is at most 254 bytes (RFC 5321 section 4.5.3.1:
//     a path of 256 with its angle brackets), the local part at most 64.
//   - Only ASCII: mailgate does not do SMTPUTF8 (Exchange Online's SMTP AUTH
//     endpoint does not offer it for local parts).
//   - A display name must not look like an address once decoded: no '@',
//     '<' or '>' nor a look-alike of them (full-width, small form), whatever
//     the charset of its encoded words, UTF-7 included.

// Limits of RFC 5321 section 4.5.3.1.
const maxAddress = 254

// MaxDisplayName keeps a From or To header with one address foldable under
// the 998-byte line limit once the name is RFC 2047 encoded.
const MaxDisplayName = 256

// CheckAddrSpec checks a bare address ("jane@contoso.com", no display name,
// no angle brackets) and returns it with its domain lower-cased; the local
// part is kept as given (RFC 5321 section 2.4 leaves its case to the
// receiving server).
func CheckAddrSpec(addr string) (string, error) {
	if err := ValidateAddress(addr); err != nil {
		return "", err
	}
	at := strings.LastIndexByte(addr, '@')
	// strings.ToLower returns the domain itself when it has nothing to
	// lower: only a domain that changes costs a new address.
	if domain := strings.ToLower(addr[at+1:]); domain != addr[at+1:] {
		return addr[:at] + "@" + domain, nil
	}
	return addr, nil
}

// ValidateAddress checks that addr is a bare address mailgate can handle: an
// ASCII dot-atom local part (RFC 5322 section 3.2.3; quoted local parts are
// not supported) and a domain name as ValidateDomain requires.
func ValidateAddress(addr string) error {
	if addr == "" {
		return errors.New("empty address")
	}
	if err := checkChars(addr); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if len(addr) > maxAddress {
		return fmt.Errorf("address longer than %d characters", maxAddress)
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return fmt.Errorf("%q: no @", addr)
	}
	if err := validateLocal(addr[:at]); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if err := ValidateDomain(addr[at+1:]); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	return nil
}

// IsDotAtom reports whether s is an RFC 5322 dot-atom-text in ASCII.
func IsDotAtom(s string) bool {
	return s != "" && validateLocal(s) == nil
}

// ParseMailbox parses one mailbox, "a@b.example" or "Name <a@b.example>",
// as a client gives it in a field of its own (the API's from, to, reply_to;
// the configuration's from.default).
//
// On top of net/mail's RFC 5322 syntax it requires: exactly one address (no
// list, no group), no control characters anywhere (a CR or LF would start a
// new header), an address as CheckAddrSpec wants it, and a display name that
// is valid UTF-8 once decoded, at most MaxDisplayName bytes, and does not
// look like an address (see CheckDisplayName). Runs of blanks in the name
// become one space. The domain of the result is lower-cased.
func ParseMailbox(s string) (*mail.Address, error) {
	if msg := ControlChar(s); msg != "" {
		return nil, errors.New(msg)
	}
	if !utf8.ValidString(s) {
		return nil, errors.New("is not valid UTF-8")
	}
	s = strings.Trim(s, " \t")
	if s == "" {
		return nil, errors.New("is empty")
	}
	if len(s) > 998 {
		return nil, fmt.Errorf("is too long (%d bytes)", len(s))
	}
	if msg := singleMailbox(s); msg != "" {
		return nil, errors.New(msg)
	}
	a, ok := parsePlainMailbox(s)
	if !ok {
		// net/mail keeps an encoded word it cannot decode as it is; a name
		// mailgate re-renders must be known to be what it says.
		var unknown string
		p := &mail.AddressParser{WordDecoder: &mime.WordDecoder{
			CharsetReader: func(cs string, r io.Reader) (io.Reader, error) {
				d, err := charsetReader(cs, r)
				if err != nil {
					unknown = cs
				}
				return d, err
			},
		}}
		var err error
		if a, err = p.Parse(s); err != nil {
			return nil, fmt.Errorf("is not a valid address: %s", trimMailErr(err))
		}
		if unknown != "" {
			return nil, fmt.Errorf("display name is in charset %q, which mailgate cannot decode; use UTF-8", unknown)
		}
	}
	addr, err := CheckAddrSpec(a.Address)
	if err != nil {
		return nil, err
	}
	a.Address = addr
	// An RFC 2047 encoded word can decode to anything, CR LF included.
	if msg := ControlChar(a.Name); msg != "" {
		return nil, errors.New("display name " + msg)
	}
	if !utf8.ValidString(a.Name) {
		return nil, errors.New("display name is not valid UTF-8")
	}
	a.Name = SqueezeSpace(a.Name)
	if len(a.Name) > MaxDisplayName {
		return nil, errors.New("display name is too long")
	}
	if err := CheckDisplayName(a.Name, a.Address); err != nil {
		return nil, err
	}
	return a, nil
}

// parsePlainMailbox parses the two shapes nearly every client sends,
// "jane@contoso.com" and "Jane Doe <jane@contoso.com>", without net/mail's
// general parser (and its allocations): an addr-spec of dot-atoms (RFC 5322
// section 3.4.1), alone or in angle brackets after a display name of words
// of ASCII letters and digits separated by single spaces. For exactly these
// net/mail returns the same Address: the addr-spec as written and the words
// as written (nothing to unquote or decode). Anything else is not ok and
// goes to net/mail (TestPlainMailboxMatchesNetMail).
func parsePlainMailbox(s string) (*mail.Address, bool) {
	if !strings.HasSuffix(s, ">") {
		if !isPlainAddrSpec(s) {
			return nil, false
		}
		return &mail.Address{Address: s}, true
	}
	lt := strings.IndexByte(s, '<')
	if lt < 0 || !isPlainAddrSpec(s[lt+1:len(s)-1]) {
		return nil, false
	}
	name := strings.TrimRight(s[:lt], " ")
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && (c != ' ' || i == 0 || name[i-1] == ' ') {
			return nil, false
		}
	}
	return &mail.Address{Name: name, Address: s[lt+1 : len(s)-1]}, true
}

// isPlainAddrSpec reports whether s is local@domain, both dot-atoms (atext
// and single dots inside), which is all net/mail's addr-spec parser checks
// of such a string.
func isPlainAddrSpec(s string) bool {
	at := strings.IndexByte(s, '@')
	return at >= 0 && isDotAtomText(s[:at]) && isDotAtomText(s[at+1:])
}

// isDotAtomText reports whether s is an RFC 5322 dot-atom-text in ASCII.
func isDotAtomText(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if s[i-1] == '.' {
				return false
			}
			continue
		}
		if !isAlnum(c) && strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) < 0 {
			return false
		}
	}
	return true
}

// ParseHeaderMailbox parses one mailbox found in the header of a raw
// message, with the rules of ParseMailbox except that the header is sent as
// it came: the display name may be in any charset, and is only made safe to
// show (CleanName). It is still refused when it decodes to something that
// looks like an address.
func ParseHeaderMailbox(s string) (*mail.Address, error) {
	s = strings.Trim(s, " \t")
	if s == "" {
		return nil, errors.New("is empty")
	}
	if msg := singleMailbox(s); msg != "" {
		return nil, errors.New(msg)
	}
	a, err := headerParser().Parse(s)
	if err != nil {
		return nil, fmt.Errorf("is not a valid address: %s", trimMailErr(err))
	}
	addr, err := CheckAddrSpec(a.Address)
	if err != nil {
		return nil, err
	}
	a.Address = addr
	a.Name = CleanName(a.Name)
	if err := CheckDisplayName(a.Name, a.Address); err != nil {
		return nil, err
	}
	return a, nil
}

// ParseHeaderList parses an address list found in the header of a raw
// message (To, Cc, Bcc, Resent-From). Groups are allowed ("undisclosed-
// recipients:;" is the usual way to say "Bcc only"); the addresses are
// checked as CheckAddrSpec wants and the display names made safe to show.
// Whether a name may look like an address is the caller's business: it
// matters for headers that name a sender, not for recipients.
func ParseHeaderList(s string) ([]*mail.Address, error) {
	if strings.Trim(s, " \t") == "" {
		return nil, nil
	}
	list, err := headerParser().ParseList(s)
	if err != nil {
		return nil, fmt.Errorf("is not a valid address list: %s", trimMailErr(err))
	}
	for _, a := range list {
		addr, err := CheckAddrSpec(a.Address)
		if err != nil {
			return nil, err
		}
		a.Address = addr
		a.Name = CleanName(a.Name)
	}
	return list, nil
}

// CheckDisplayName refuses a display name that would show as another
// address: `"ceo@contoso.com" <evil@x.example>` shows as the CEO in most
// clients. A name equal to its own address is fine. Full-width and
// small-form look-alikes of '@', '<' and '>' count as the real thing, since
// a reader cannot tell them apart.
func CheckDisplayName(name, addr string) error {
	if !strings.ContainsAny(name, "@<>") && strings.IndexFunc(name, isLookalike) < 0 {
		return nil
	}
	if strings.EqualFold(strings.Trim(name, " \t"), addr) {
		return nil
	}
	return errors.New("display name must not contain '@', '<' or '>' (or a look-alike): it would show as another address")
}

// isLookalike reports whether r is shown much like '@', '<' or '>'. The
// full-width and small forms are what NFKC folds to them (Unicode's
// compatibility mappings); the angle brackets below have no such mapping but
// look the same in most fonts.
func isLookalike(r rune) bool {
	switch r {
	case '\uFF20', '\uFE6B', // FULLWIDTH, SMALL COMMERCIAL AT
		'\uFF1C', '\uFE64', '\uFF1E', '\uFE65', // FULLWIDTH, SMALL LESS-/GREATER-THAN
		'\u2039', '\u203A', // SINGLE ANGLE QUOTATION MARKS
		'\u2329', '\u232A', '\u3008', '\u3009', '\u27E8', '\u27E9': // ANGLE BRACKETS
		return true
	}
	return false
}

// headerParser decodes what it can and passes the bytes of an unknown
// charset through: a raw header is sent as it came (ISO-2022-JP and other
// legacy charsets are common), and its decoded name is only checked and
// shown in the status.
func headerParser() *mail.AddressParser {
	return &mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(cs string, r io.Reader) (io.Reader, error) {
			if d, err := charsetReader(cs, r); err == nil {
				return d, nil
			}
			return r, nil
		},
	}}
}

// charsetReader decodes the charsets golang.org/x/text knows by their IANA
// or WHATWG names, and UTF-7 (RFC 2152), which x/text does not know but
// some clients still decode, so that `=?utf-7?q?ceo+AEA-contoso.com?=` is
// seen as the "ceo@contoso.com" they would show.
func charsetReader(cs string, r io.Reader) (io.Reader, error) {
	switch strings.ToLower(cs) {
	case "utf-7", "utf7", "unicode-1-1-utf-7", "csunicode11utf7", "x-unicode20utf7":
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		return strings.NewReader(decodeUTF7(b)), nil
	}
	enc, err := ianaindex.MIME.Encoding(cs)
	if enc == nil || err != nil {
		enc, err = htmlindex.Get(cs)
	}
	if enc == nil || err != nil {
		return nil, fmt.Errorf("unknown charset %q", cs)
	}
	return enc.NewDecoder().Reader(r), nil
}

// decodeUTF7 decodes RFC 2152 UTF-7: "+" starts a run of modified base64
// (UTF-16BE, no padding) that ends at the first character outside the base64
// alphabet, a "-" there being absorbed; "+-" is a literal "+". Bytes that do
// not decode become U+FFFD: the result is only inspected and shown.
func decodeUTF7(b []byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] != '+' {
			out.WriteByte(b[i])
			continue
		}
		i++
		if i < len(b) && b[i] == '-' {
			out.WriteByte('+')
			continue
		}
		var bits, nbits uint32
		var units []uint16
		for ; i < len(b); i++ {
			v := strings.IndexByte(alphabet, b[i])
			if v < 0 {
				break
			}
			bits = bits<<6 | uint32(v)
			nbits += 6
			if nbits >= 16 {
				nbits -= 16
				units = append(units, uint16(bits>>nbits))
				bits &= 1<<nbits - 1
			}
		}
		for j := 0; j < len(units); j++ {
			u := rune(units[j])
			if 0xD800 <= u && u < 0xDC00 && j+1 < len(units) && 0xDC00 <= units[j+1] && units[j+1] < 0xE000 {
				u = 0x10000 + (u-0xD800)<<10 + rune(units[j+1]) - 0xDC00
				j++
			}
			out.WriteRune(u)
		}
		if i < len(b) && b[i] != '-' {
			out.WriteByte(b[i]) // the character that ended the run
		}
	}
	return out.String()
}

func trimMailErr(err error) string {
	return strings.TrimPrefix(err.Error(), "mail: ")
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

// ControlChar describes the first control character in s, or returns "".
// TAB is allowed: it is whitespace in header values (RFC 5322 WSP).
func ControlChar(s string) string {
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

// CleanName makes a display name decoded from a raw header safe to show:
// valid UTF-8 without control characters.
func CleanName(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// SqueezeSpace trims s and turns every run of spaces and tabs into one
// space. go-mail folds at every space, so a long run of blanks would become
// a header line made only of whitespace, which some parsers take for the
// blank line that ends the header (RFC 5322 section 3.2.2 forbids it). Display
// names, subjects and extra header values all go through it.
func SqueezeSpace(s string) string {
	if squeezed(s) {
		return s
	}
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '\t' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteByte(c)
	}
	return b.String()
}

// squeezed reports whether SqueezeSpace would return s as it is: no blank
// at either end, no tab, no two spaces in a row.
func squeezed(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '\t' || s[i] == ' ' && s[i+1] == ' ' {
			return false
		}
	}
	return true
}
