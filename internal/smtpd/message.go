package smtpd

import (
	"bytes"
	"net/netip"
	"strings"
	"time"
)

// smuggling reports whether data holds a line of only "." that is started
// or ended by a bare LF or CR, such as "\n.\r\n" or "\r\n.\n".
//
// go-smtp ends DATA only at CRLF.CRLF, so such a line arrives here as part
// of the message. But other servers have ended DATA at LF.CRLF or LF.LF
// (CVE-2023-51766 for Exim, CVE-2023-51764 for Postfix), and once the
// message is stored with CRLF line ends (compose normalises them), the
// bytes after that line could be read downstream as new SMTP commands: one
// message would become two, the second with a sender nobody checked. A
// legitimate client has no reason to send a lone dot next to a bare line
// end, so the message is refused rather than repaired.
//
// A dot-stuffed line ("..\r\n") arrives unstuffed, as "\r\n.\r\n", and is
// fine: both its line ends are CRLF.
func smuggling(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] != '.' {
			continue
		}
		// The dot must start a line: at the start, or after LF or CR.
		if i > 0 && data[i-1] != '\n' && data[i-1] != '\r' {
			continue
		}
		// ... and end it.
		if i+1 < len(data) && data[i+1] != '\n' && data[i+1] != '\r' {
			continue
		}
		before := i == 0 || i >= 2 && data[i-2] == '\r' && data[i-1] == '\n'
		after := i+1 == len(data) || i+2 < len(data) && data[i+1] == '\r' && data[i+2] == '\n'
		if !before || !after {
			return true
		}
	}
	return false
}

// received returns mailgate's Received header (RFC 5321 section 4.4), with
// the protocol named as RFC 3848 does: ESMTP, plus S with TLS, plus A when
// the client authenticated. "for" names the recipient only when there is
// one, so Bcc recipients of a message are not revealed to the others.
func received(helo string, ip netip.Addr, hostname string, tls, auth bool, id string, rcpts []string, now time.Time) []byte {
	proto := "ESMTP"
	if tls {
		proto += "S"
	}
	if auth {
		proto += "A"
	}
	lit := "[" + ip.String() + "]"
	if ip.Is6() {
		lit = "[IPv6:" + ip.String() + "]"
	}
	var b bytes.Buffer
	b.WriteString("Received: from " + cleanHelo(helo) + " (" + lit + ")\r\n")
	b.WriteString("\tby " + hostname + " (mailgate) with " + proto + " id " + id)
	if len(rcpts) == 1 {
		b.WriteString("\r\n\tfor <" + rcpts[0] + ">")
	}
	b.WriteString(";\r\n\t" + now.Format(time.RFC1123Z) + "\r\n")
	return b.Bytes()
}

// cleanHelo keeps a HELO argument that looks like a domain or an address
// literal; anything else (spaces, comments, control characters) becomes
// "unknown", so a client cannot write its own text into the header.
func cleanHelo(h string) string {
	if h == "" || len(h) > 255 || strings.IndexFunc(h, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_:[]", r))
	}) >= 0 {
		return "unknown"
	}
	return h
}
