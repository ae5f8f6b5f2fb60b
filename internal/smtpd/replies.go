package smtpd

import "strconv"

// go-smtp answers some commands itself, before the session sees them, and
// offers no hook for it (v0.25 and v0.26: Server.ErrorLog reports only
// internal errors; Server.Debug is one writer per server that gets both
// directions). Those replies, from conn.go and server.go:
//
//	552 5.3.4  MAIL FROM with SIZE= over smtp.max_message_bytes; a BDAT chunk over it
//	452 4.5.3  RCPT TO beyond smtp.max_recipients
//	500 5.4.0  a command line over 2000 bytes (the connection is closed)
//	500/501/504 5.5.2, 5.5.4  malformed commands, paths and parameters
//	502/503 5.5.1  commands out of sequence or not implemented
//	500 5.5.1  a fourth syntax error (the connection is closed)
//	421 4.4.2, 4.4.0  idle timeout, connection error
//
// A message body over smtp.max_message_bytes during DATA is not among
// them: go-smtp's reader returns ErrDataTooLarge to the session's Data,
// which answers and counts it. So the door reads the replies it writes,
// and a reply of 4xx or 5xx that the session did not announce
// (session.refuse) is go-smtp's own. Only the start of each reply's first
// line is looked at (its code and enhanced code), with no allocation.
//
// Where the bytes are read: before TLS, on the served connection itself
// (trackedConn.Write). Once TLS has begun (STARTTLS, or the implicit-TLS
// listener) that connection carries ciphertext, and the only clear copy
// go-smtp gives is its Server.Debug writer, which gets both what it reads
// and what it writes. So each connection has its own go-smtp server with
// its own Debug writer (clearReplies), and a chunk there is a reply when
// a socket write came just before it: go-smtp writes a reply to the
// connection and then to Debug, and a command is read without a write.
// Two reads follow a write that was not a reply: the first command after
// STARTTLS (the handshake wrote last) and a chunk read after a TLS 1.3
// KeyUpdate the client asked for. Such a chunk is taken for a reply, and
// counts only if it starts with a code and a space: no SMTP verb does, a
// line of a message body might.

// replyReader follows the replies written on one connection.
type replyReader struct {
	atLineStart bool // true before the first write
	replies     int  // complete replies seen
	off         bool // TLS began: the bytes are no longer readable
}

// reply is the code and enhanced code of a reply's last line.
type reply struct {
	code     int
	enhanced [3]int // zero when the reply has none
}

// write looks at p, bytes just written to the client, and returns the
// replies it completes. It assumes one reply line per write at most ends
// in p, which is how go-smtp writes (textproto flushes each line).
func (r *replyReader) write(p []byte) (reply, bool) {
	if r.off || len(p) == 0 {
		return reply{}, false
	}
	start := r.atLineStart
	r.atLineStart = p[len(p)-1] == '\n'
	if !start || len(p) < 4 || p[3] != ' ' {
		return reply{}, false // a continuation line (250-...) or the rest of a long one
	}
	code := 0
	for _, b := range p[:3] {
		if b < '0' || b > '9' {
			return reply{}, false
		}
		code = code*10 + int(b-'0')
	}
	r.replies++
	rep := reply{code: code}
	rep.enhanced, _ = parseEnhanced(p[4:])
	if code == 220 && r.replies > 1 {
		// Ready to start TLS: what follows is encrypted.
		r.off = true
	}
	return rep, true
}

// parseEnhanced reads "x.y.z " at the start of p.
func parseEnhanced(p []byte) ([3]int, bool) {
	var e [3]int
	i := 0
	for part := 0; part < 3; part++ {
		n, digits := 0, 0
		for i < len(p) && p[i] >= '0' && p[i] <= '9' && digits < 3 {
			n = n*10 + int(p[i]-'0')
			i++
			digits++
		}
		if digits == 0 {
			return [3]int{}, false
		}
		e[part] = n
		sep := byte('.')
		if part == 2 {
			sep = ' '
		}
		if i >= len(p) || p[i] != sep {
			return [3]int{}, false
		}
		i++
	}
	return e, true
}

// protocolReason names a refusal go-smtp made itself, for the metric's
// reason label and the log line: a fixed set, whatever the client sent.
func protocolReason(r reply) string {
	switch {
	case r.code == 552 && r.enhanced == [3]int{5, 3, 4}:
		return "message_too_big"
	case r.code == 452 && r.enhanced == [3]int{4, 5, 3}:
		return "too_many_recipients"
	case r.code == 500 && r.enhanced == [3]int{5, 4, 0}:
		return "line_too_long"
	case r.code == 500 && r.enhanced == [3]int{5, 5, 1}:
		return "too_many_errors"
	case r.code == 421 && r.enhanced == [3]int{4, 4, 2}:
		return "timeout"
	case (r.code == 502 || r.code == 503) && r.enhanced == [3]int{5, 5, 1}:
		return "bad_sequence"
	case r.code >= 500 && r.code <= 504 && r.enhanced[0] == 5 && r.enhanced[1] == 5:
		return "syntax"
	}
	return "other"
}

func (r reply) String() string {
	s := strconv.Itoa(r.code)
	if r.enhanced != [3]int{} {
		s += " " + strconv.Itoa(r.enhanced[0]) + "." + strconv.Itoa(r.enhanced[1]) + "." + strconv.Itoa(r.enhanced[2])
	}
	return s
}
