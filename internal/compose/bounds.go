package compose

import "bytes"

// Bounds on counts, not only on bytes.
//
// A message's size is bounded by the app's max_message_bytes, but the work
// and memory a message costs depend on how many things it holds: a header
// field, a MIME part or an attachment costs a few hundred bytes of
// bookkeeping however small it is, so ten million empty ones in a message of
// the allowed size would cost gigabytes. Each count is checked before the
// costly step (for a raw message, the header fields are counted before the
// header is parsed, and parts as they are met), and each bound is far above
// what real mail has: a message relayed through many hops carries a few
// dozen trace fields, and mail clients rarely attach more than a handful of
// files.
const (
	// MaxHeaderFields bounds the fields of one header (the message's or a
	// part's) of a raw message.
	MaxHeaderFields = 500
	// MaxParts bounds the MIME entities of a raw message, at all levels.
	MaxParts = 500
	// MaxAttachments bounds a built message's attachments.
	MaxAttachments = 100
	// MaxCustomHeaders bounds a built message's extra headers.
	MaxCustomHeaders = 100
)

// countHeaderFields counts the fields of the header that opens data (CRLF
// line endings), without parsing them: lines up to the first empty one that
// do not start with white space (which would continue the field before).
// It stops counting past limit.
func countHeaderFields(data []byte, limit int) int {
	n := 0
	for len(data) > 0 && n <= limit {
		end := bytes.Index(data, []byte("\r\n"))
		if end == 0 {
			break // the blank line that ends the header
		}
		if data[0] != ' ' && data[0] != '\t' {
			n++
		}
		if end < 0 {
			break
		}
		data = data[end+2:]
	}
	return n
}
