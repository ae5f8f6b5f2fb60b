package exosim

import "strings"

// maySendAs reports whether mailbox may put addr in MAIL FROM or the header
// From: itself, or an address it holds Send As on. Exchange refuses anything
// else with 550 5.7.60.
func (o Options) maySendAs(mailbox, addr string) bool {
	if addr == "" {
		return false
	}
	if strings.EqualFold(mailbox, addr) {
		return true
	}
	for _, pat := range o.SendAs[strings.ToLower(mailbox)] {
		if matchAddress(pat, addr) {
			return true
		}
	}
	return false
}

// domainAccepted reports whether the domain of addr is one of the tenant's
// accepted domains.
func (o Options) domainAccepted(addr string) bool {
	d := domainOf(addr)
	if d == "" {
		return false
	}
	for _, a := range o.AcceptedDomains {
		if strings.EqualFold(a, d) {
			return true
		}
	}
	return false
}

// matchAddress matches addr against a pattern of the contract's forms: an
// exact address, "*@domain" (the whole domain) or "*@*.domain" (every
// subdomain, not the domain itself). Case is ignored.
func matchAddress(pattern, addr string) bool {
	pattern, addr = strings.ToLower(pattern), strings.ToLower(addr)
	switch {
	case strings.HasPrefix(pattern, "*@*."):
		return strings.HasSuffix(domainOf(addr), pattern[3:])
	case strings.HasPrefix(pattern, "*@"):
		return domainOf(addr) == pattern[2:]
	}
	return pattern == addr
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}
