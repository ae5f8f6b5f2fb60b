package compose

import (
	"strings"
	"unicode/utf8"
)

// maxLine is the longest line RFC 5322 section 2.1.1 allows, without CRLF.
const maxLine = 998

// The header rules of both paths, in one place.
//
//   - senderHeader: fields that name who sends the message (RFC 5322
//     sections 3.6.2 and 3.6.6). Every address in them must be within the
//     app's From policy (Message.Senders carries them to the policy), and
//     their display names must not look like an address. A JSON client
//     gives the From in its own field and cannot set the others: it has no
//     reason to, and a raw message is the way to send a prepared header.
//   - traceHeader: fields a server adds on the way (RFC 5321 section 4.4:
//     Received and Return-Path; DKIM-Signature, a signer's claim over a
//     header mailgate changes). A raw message loses them silently: a
//     message re-submitted from a mailbox, passed through a local MTA or
//     piped by a sendmail shim from cron carries them innocently, refusing
//     it would only break those senders, and what counts is that none
//     reaches Exchange Online as if a server had written it. mailgate's own
//     SMTP door adds its Received after this check. A JSON client naming one
//     in headers is told no, since it asked for something explicitly.
//   - trustedHeader: verdicts Exchange Online may honour. Refused on both
//     paths: there is no innocent reason to send one, and the app should
//     hear about it.
//
// ownedHeader reports whether mailgate sets the header itself, so that a
// JSON client must not: the addresses and the envelope are checked against
// the app's policy, the MIME structure is built here, and trace and
// signature fields belong to the servers on the way.
func ownedHeader(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version":
		return true
	}
	return senderHeader(n) || traceHeader(n) || strings.HasPrefix(n, "content-") ||
		strings.HasPrefix(n, "resent-") || trustedHeader(n)
}

// senderHeader reports whether the field names a sender; see above.
func senderHeader(name string) bool {
	switch strings.ToLower(name) {
	case "from", "sender", "resent-from", "resent-sender":
		return true
	}
	return false
}

// traceHeader reports whether the field is one a server adds on the way,
// which a raw message loses; see above.
func traceHeader(name string) bool {
	switch strings.ToLower(name) {
	case "return-path", "received", "dkim-signature":
		return true
	}
	return false
}

// trustedHeader reports whether a header carries a verdict that Exchange
// Online may honour from a trusted source: an inbound connector can be
// trusted to keep X-MS-Exchange-Organization-* (an SCL of -1 skips spam
// filtering), and authentication results and ARC seals vouch for a path the
// message never took. An app must never be able to set them.
func trustedHeader(name string) bool {
	n := strings.ToLower(name)
	for _, p := range []string{"x-ms-exchange-organization-", "x-ms-exchange-crosstenant-",
		"x-ms-exchange-transport-", "arc-"} {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return n == "authentication-results" || n == "received-spf"
}

// checkFieldName checks an RFC 5322 field name (section 3.6.8): printable
// ASCII except ':'.
func checkFieldName(name string) string {
	if name == "" {
		return "header name is empty"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '\r' || c == '\n' || c == 0 {
			return "header name contains a line break or NUL (header injection)"
		}
		if c < 33 || c > 126 || c == ':' {
			return "header name may contain only printable ASCII characters except ':'"
		}
	}
	if len(name) > 76 {
		return "header name is too long"
	}
	return ""
}

// checkHeaderValue checks a value that go-mail will write into the header
// named name. go-mail RFC 2047-encodes values with non-ASCII characters (the
// encoded words are at most 75 characters, RFC 2047 section 2) and folds
// only at spaces, so an ASCII run without a space must fit on one line after
// "Name: ".
func checkHeaderValue(name, value string) string {
	if msg := controlChar(value); msg != "" {
		return msg
	}
	if !utf8.ValidString(value) {
		return "is not valid UTF-8"
	}
	if needsEncoding(value) {
		return "" // encoded words are short and separated by spaces
	}
	limit := maxLine - len(name) - len(": ")
	for _, word := range strings.Split(value, " ") {
		if len(word) > limit {
			return "has a word too long for one header line (RFC 5322 allows 998 bytes); add spaces or shorten it"
		}
	}
	return ""
}

// needsEncoding mirrors the test of mime.WordEncoder, which go-mail uses:
// anything but printable ASCII and TAB is RFC 2047-encoded.
func needsEncoding(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' || c > '~') && c != '\t' {
			return true
		}
	}
	return false
}
