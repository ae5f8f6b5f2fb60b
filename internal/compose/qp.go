package compose

// appendQP appends s to dst in quoted-printable (RFC 2045 section 6.7),
// byte for byte what mime/quotedprintable's Writer (not in Binary mode)
// writes for s followed by Close, which is what go-mail writes for a text
// part. The Writer copies and checks one byte at a time and hands each line
// to the io.Writer under it; this copies runs of bytes that stay as they
// are, and writes straight into dst. FuzzAppendQPMatchesWriter holds it to
// the Writer.
//
// The Writer's rules, which this follows: a line holds at most 75
// characters before the '=' of a soft line break; a byte that is neither
// printable ASCII (other than '=') nor a blank becomes =XX, on the next
// line when it does not fit; CR, LF and CRLF become CRLF, a blank that ends
// a line or the text becomes =20 or =09; and, as the Writer does, an
// encoded byte between a CR and an LF does not stop the LF from counting
// as the CR's.
func appendQP(dst []byte, s string) []byte {
	e := qpEncoder{out: dst}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n' || c == '\r':
			i++
			if e.cr && c == '\n' {
				e.cr = false
				continue
			}
			e.cr = c == '\r'
			e.encodeTrailingBlank()
			e.out = append(e.out, '\r', '\n')
			e.line = 0
		case qpLiteral(c):
			j := i + 1
			for j < len(s) && qpLiteral(s[j]) {
				j++
			}
			for run := s[i:j]; len(run) > 0; {
				if e.line == qpMaxLine {
					e.softBreak()
				}
				n := min(len(run), qpMaxLine-e.line)
				e.out = append(e.out, run[:n]...)
				e.line += n
				run = run[n:]
			}
			e.cr = false
			i = j
		default:
			e.encode(c)
			i++
		}
	}
	e.encodeTrailingBlank()
	return e.out
}

// qpMaxLine is how many characters a line holds before a soft line
// break's '=' (76 in all, RFC 2045 section 6.7 rule 5).
const qpMaxLine = 75

// qpLiteral reports whether c is written as it is: printable ASCII but
// '=', and the blanks.
func qpLiteral(c byte) bool {
	return c >= '!' && c <= '~' && c != '=' || c == ' ' || c == '\t'
}

type qpEncoder struct {
	out  []byte
	line int  // characters on the line being written
	cr   bool // the last line break written was a CR's
}

func (e *qpEncoder) softBreak() {
	e.out = append(e.out, '=', '\r', '\n')
	e.line = 0
}

func (e *qpEncoder) encode(c byte) {
	if qpMaxLine-e.line < 3 {
		e.softBreak()
	}
	const hex = "0123456789ABCDEF"
	e.out = append(e.out, '=', hex[c>>4], hex[c&0x0f])
	e.line += 3
}

// encodeTrailingBlank encodes the blank that ends the line, if any.
func (e *qpEncoder) encodeTrailingBlank() {
	if e.line == 0 {
		return
	}
	if c := e.out[len(e.out)-1]; c == ' ' || c == '\t' {
		e.out = e.out[:len(e.out)-1]
		e.line--
		e.encode(c)
	}
}
