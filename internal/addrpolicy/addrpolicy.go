// Package addrpolicy parses and matches the address patterns of mailgate's
// configuration: who an app may send as and to, and who a route can send as.
//
// A pattern is one of three forms (the configuration reference in README.md):
//
//	a@contoso.com     exactly that address
//	*@contoso.com     any address of that domain, not of its subdomains
//	*@*.contoso.com   any address of any subdomain, at any depth, but not of
//	                  contoso.com itself
//
// There is no other wildcard: `a*@contoso.com`, `a@*.contoso.com` and `*@*`
// are refused when parsed, so a typo cannot silently widen a policy.
//
// Matching ignores case in both parts. RFC 5321 section 2.4 lets a server
// treat local parts as case-sensitive, but Exchange Online does not, and a
// policy that told "Alerts@" from "alerts@" would only surprise.
//
// Only ASCII addresses are accepted: domains are written in their xn-- form.
// Exchange Online's SMTP AUTH endpoint does not offer SMTPUTF8 for
// internationalised local parts, so refusing them early is kinder than a
// bounce.
//
// The package is also mailgate's one address parser (address.go): the
// literal parts of a pattern, the API's addresses, the headers of a raw
// message and the configuration's from.default are all checked by the same
// rules, so that what config check accepts the door accepts too.
//
// Set.Covers answers the question config check asks: is everything an app
// may send as also something its route can send as? Because each pattern
// denotes an infinite set except the exact form, one pattern of a set covers
// another only in the few ways listed on Covers, and checking pattern by
// pattern is complete: no union of patterns covers what no single one does
// (a domain or a subdomain tree has infinitely many addresses, and only a
// domain or subdomain pattern holds infinitely many of them).
package addrpolicy

import (
	"errors"
	"fmt"
	"strings"
)

// Kind says which of the three forms a Pattern has.
type Kind uint8

// The forms of a Pattern. The zero Kind belongs to the zero Pattern, which
// matches nothing.
const (
	KindAddress    Kind = iota + 1 // a@contoso.com
	KindDomain                     // *@contoso.com
	KindSubdomains                 // *@*.contoso.com
)

// Pattern is a parsed address pattern. Its zero value matches nothing.
type Pattern struct {
	kind   Kind
	local  string // lower case; set only for KindAddress
	domain string // lower case, without the "*." of KindSubdomains
}

// Limits of RFC 5321 section 4.5.3.1.
const (
	maxLocal  = 64
	maxDomain = 253
	maxLabel  = 63
)

// Parse parses one pattern. Surrounding spaces are not trimmed: a pattern with
// a space, a line break or any other control character is an error, because
// such a value is more likely a YAML or templating mistake than an address.
func Parse(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, errors.New("empty address pattern")
	}
	if err := checkChars(s); err != nil {
		return Pattern{}, fmt.Errorf("%q: %w", s, err)
	}
	p, err := parse(s)
	if err != nil {
		return Pattern{}, fmt.Errorf("%q: %w", s, err)
	}
	return p, nil
}

func parse(s string) (Pattern, error) {
	at := strings.IndexByte(s, '@')
	switch {
	case at < 0:
		return Pattern{}, errors.New("no @; want a@contoso.com, *@contoso.com or *@*.contoso.com")
	case strings.Count(s, "@") > 1:
		return Pattern{}, errors.New("more than one @")
	}
	local, domain := s[:at], s[at+1:]
	if local == "" {
		return Pattern{}, errors.New("nothing before @")
	}
	if domain == "" {
		return Pattern{}, errors.New("no domain after @")
	}
	if domain == "*" {
		return Pattern{}, errors.New("*@* would match every address; name a domain (*@contoso.com) or a subdomain tree (*@*.contoso.com)")
	}

	if local == "*" {
		kind := KindDomain
		if rest, ok := strings.CutPrefix(domain, "*."); ok {
			kind, domain = KindSubdomains, rest
		}
		if err := ValidateDomain(domain); err != nil {
			return Pattern{}, err
		}
		return Pattern{kind: kind, domain: strings.ToLower(domain)}, nil
	}

	if strings.Contains(local, "*") {
		return Pattern{}, errors.New(`"*" may only be the whole part before @ (*@contoso.com); partial wildcards are not supported`)
	}
	if strings.HasPrefix(domain, "*.") {
		return Pattern{}, errors.New("a subdomain wildcard needs * before @ (*@*.contoso.com)")
	}
	if len(s) > maxAddress {
		return Pattern{}, fmt.Errorf("address longer than %d characters", maxAddress)
	}
	if err := validateLocal(local); err != nil {
		return Pattern{}, err
	}
	if err := ValidateDomain(domain); err != nil {
		return Pattern{}, err
	}
	return Pattern{kind: KindAddress, local: strings.ToLower(local), domain: strings.ToLower(domain)}, nil
}

// Match reports whether addr, a bare address such as "Jane@Contoso.com"
// (no display name, no angle brackets), is matched by p.
func (p Pattern) Match(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return false
	}
	local, domain := addr[:at], strings.ToLower(addr[at+1:])
	switch p.kind {
	case KindAddress:
		return domain == p.domain && strings.ToLower(local) == p.local
	case KindDomain:
		return domain == p.domain
	case KindSubdomains:
		return isSubdomain(domain, p.domain)
	}
	return false
}

// Kind returns the form of p.
func (p Pattern) Kind() Kind { return p.kind }

// Domain returns p's domain in lower case; for *@*.contoso.com it is
// contoso.com.
func (p Pattern) Domain() string { return p.domain }

// String returns p in its canonical, lower-case form.
func (p Pattern) String() string {
	switch p.kind {
	case KindAddress:
		return p.local + "@" + p.domain
	case KindDomain:
		return "*@" + p.domain
	case KindSubdomains:
		return "*@*." + p.domain
	}
	return ""
}

// within reports whether every address p matches is also matched by q.
func (p Pattern) within(q Pattern) bool {
	switch p.kind {
	case KindAddress:
		return q.Match(p.local + "@" + p.domain)
	case KindDomain:
		return q.kind == KindDomain && q.domain == p.domain ||
			q.kind == KindSubdomains && isSubdomain(p.domain, q.domain)
	case KindSubdomains:
		return q.kind == KindSubdomains && (q.domain == p.domain || isSubdomain(p.domain, q.domain))
	}
	return false
}

// isSubdomain reports whether d is a proper subdomain of parent, at any
// depth: x.contoso.com and y.x.contoso.com are, contoso.com and
// evilcontoso.com are not. Both must be lower case.
func isSubdomain(d, parent string) bool {
	prefix, ok := strings.CutSuffix(d, "."+parent)
	return ok && prefix != "" && prefix[0] != '.' && prefix[len(prefix)-1] != '.'
}

// Set is a list of patterns; an address is in the set when any pattern
// matches it.
type Set []Pattern

// ParseSet parses every pattern of list and reports all bad ones at once,
// each with its index.
func ParseSet(list []string) (Set, error) {
	set := make(Set, 0, len(list))
	var errs []error
	for i, s := range list {
		p, err := Parse(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("[%d] %w", i, err))
			continue
		}
		set = append(set, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// Match reports whether any pattern of s matches addr.
func (s Set) Match(addr string) bool {
	for _, p := range s {
		if p.Match(addr) {
			return true
		}
	}
	return false
}

// Covers reports whether every address p can match is matched by s, that is
// whether some pattern q of s contains p:
//
//   - an exact address is within any q that matches it;
//   - *@d is within *@d, and within *@*.e when d is a proper subdomain of e;
//   - *@*.d is within *@*.e when d is e or a subdomain of e.
//
// Nothing else contains a wildcard pattern; in particular *@d does not cover
// *@*.d, and no list of exact addresses covers *@d.
func (s Set) Covers(p Pattern) bool {
	for _, q := range s {
		if p.within(q) {
			return true
		}
	}
	return false
}

// String lists the patterns of s, separated by ", ".
func (s Set) String() string {
	parts := make([]string, len(s))
	for i, p := range s {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}

// ValidateDomain checks that d is a host name of letters, digits and hyphens
// in two or more dot-separated labels (RFC 1035 section 2.3.1, as relaxed by
// RFC 1123 to allow a leading digit), without a trailing dot, whose
// top-level label is not all digits. A single label such as "localhost" and
// an IP address are refused: Exchange Online routes registered domains only
// (RFC 5321 section 2.3.5 asks for fully-qualified names).
func ValidateDomain(d string) error {
	switch {
	case d == "":
		return errors.New("empty domain")
	case len(d) > maxDomain:
		return fmt.Errorf("domain longer than %d characters", maxDomain)
	case strings.HasPrefix(d, "["):
		return errors.New("address literals ([192.0.2.1]) are not supported; use a domain name")
	case strings.HasSuffix(d, "."):
		return fmt.Errorf("domain %q ends with a dot", d)
	case strings.Contains(d, "*"):
		return fmt.Errorf("domain %q: a wildcard may only be a leading *. after *@ (*@*.contoso.com)", d)
	}
	labels, last := 0, "" // counted and kept as they go: no slice of labels
	for rest := d; ; {
		label, more, found := strings.Cut(rest, ".")
		labels, last = labels+1, label
		if label == "" {
			return fmt.Errorf("domain %q has an empty label", d)
		}
		if len(label) > maxLabel {
			return fmt.Errorf("domain %q has a label longer than %d characters", d, maxLabel)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("domain %q has a label that starts or ends with a hyphen", d)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(isAlnum(c) || c == '-') {
				if c >= 0x80 {
					return fmt.Errorf("domain %q is not ASCII; write it in its xn-- form", d)
				}
				return fmt.Errorf("domain %q contains %q; only letters, digits, hyphens and dots are allowed", d, c)
			}
		}
		if !found {
			break
		}
		rest = more
	}
	if labels < 2 {
		return fmt.Errorf("domain %q has a single label: it is not a domain name such as contoso.com", d)
	}
	if strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("domain %q is an IP address; use a domain name", d)
	}
	return nil
}

// validateLocal checks a dot-atom local part (RFC 5322 section 3.2.3).
func validateLocal(l string) error {
	switch {
	case l == "":
		return errors.New("nothing before @")
	case len(l) > maxLocal:
		return fmt.Errorf("local part longer than %d characters", maxLocal)
	case l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, ".."):
		return errors.New("local part starts or ends with a dot, or has two in a row")
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c == '.' || isAlnum(c) || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0 {
			continue
		}
		if c >= 0x80 {
			return errors.New("local part is not ASCII; internationalised addresses are not supported")
		}
		return fmt.Errorf("local part contains %q; quoted local parts are not supported", c)
	}
	return nil
}

// checkChars refuses whitespace and control characters anywhere. A CR or LF
// in particular would let a value that ends up in a header add headers of
// its own.
func checkChars(s string) error {
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n':
			return errors.New("contains a line break")
		case r == ' ' || r == '\t':
			return errors.New("contains a space")
		case r < 0x20 || r == 0x7f:
			return errors.New("contains a control character")
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
