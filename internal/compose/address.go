package compose

import (
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/mailgate/mailgate/internal/addrpolicy"
)

// ParseAddress parses one mailbox, "a@b.example" or "Name <a@b.example>",
// with mailgate's one address parser (addrpolicy.ParseMailbox): exactly one
// mailbox, an ASCII dot-atom on a fully-qualified domain, and a display name
// that does not look like an address. The domain of the result is
// lower-cased; the local part is kept as given.
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
	a, err := addrpolicy.ParseMailbox(s)
	if err != nil {
		return nil, invalid("", "%s", err.Error())
	}
	return a, nil
}

// parseRawMailbox parses one mailbox of a raw message's header.
func parseRawMailbox(s string) (*mail.Address, *Error) {
	a, err := addrpolicy.ParseHeaderMailbox(s)
	if err != nil {
		return nil, invalid("", "%s", err.Error())
	}
	return a, nil
}

// parseRawList parses a To, Cc or Bcc field of a raw message. Only the
// addr-specs are checked: display names of recipients cannot fake the
// sender.
func parseRawList(s string) ([]*mail.Address, *Error) {
	list, err := addrpolicy.ParseHeaderList(s)
	if err != nil {
		return nil, invalid("", "%s", err.Error())
	}
	return list, nil
}

// controlChar and cleanName are the address parser's, used here for every
// header value.
func controlChar(s string) string { return addrpolicy.ControlChar(s) }
func cleanName(s string) string   { return addrpolicy.CleanName(s) }

// isDotAtom reports whether s is an RFC 5322 dot-atom-text.
func isDotAtom(s string) bool { return addrpolicy.IsDotAtom(s) }

// isAtext reports whether c is an RFC 5322 atext character (ASCII only).
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
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
