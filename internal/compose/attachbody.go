package compose

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// base64Line is the input of one base64 body line: 57 bytes make the 76
// characters RFC 2045 section 6.8 allows, which is also where go-mail
// breaks its lines.
const base64Line = 57

// attachmentBody stands in for an attachment's content while go-mail
// renders the message: go-mail is given a random token to encode instead of
// the content, and splice puts the content, base64-encoded, where the
// token's encoding landed. go-mail would base64-encode the content into a
// buffer it grows as it goes and then copy it out, about five times the
// attachment in allocations (see the package comment).
type attachmentBody struct {
	content []byte
	// mark is the token's body as go-mail writes it: one base64 line and
	// its CRLF. 24 random bytes make a line no client can predict.
	mark []byte
}

func newAttachmentBody(content []byte) (*attachmentBody, []byte) {
	token := make([]byte, 24)
	_, _ = rand.Read(token) // crypto/rand.Read never fails
	mark := base64.StdEncoding.AppendEncode(nil, token)
	return &attachmentBody{content: content, mark: append(mark, '\r', '\n')}, token
}

// encodedLen is the size of the content as go-mail would write it: base64
// lines of at most 76 characters, each ended by CRLF.
func (a *attachmentBody) encodedLen() int {
	n := base64.StdEncoding.EncodedLen(len(a.content))
	return n + 2*((len(a.content)+base64Line-1)/base64Line)
}

// appendEncoded appends the content in base64 lines to dst, which must
// have the room (encodedLen) so that nothing is reallocated.
func (a *attachmentBody) appendEncoded(dst []byte) []byte {
	for c := a.content; len(c) > 0; {
		n := min(len(c), base64Line)
		dst = base64.StdEncoding.AppendEncode(dst, c[:n])
		dst = append(dst, '\r', '\n')
		c = c[n:]
	}
	return dst
}

// splice returns skeleton, go-mail's rendering with tokens for bodies, with
// each token replaced by its attachment's encoded content. bodies must be
// in the order go-mail writes them. The result is allocated once, at its
// final size plus room for extra more bytes.
func splice(skeleton []byte, bodies []*attachmentBody, extra int) ([]byte, error) {
	size := len(skeleton) + extra
	for _, b := range bodies {
		size += b.encodedLen() - len(b.mark)
	}
	out := make([]byte, 0, size)
	rest := skeleton
	for i, b := range bodies {
		// A part's body follows the blank line that ends its header.
		at := bytes.Index(rest, b.mark)
		if at < 0 || !bytes.HasSuffix(rest[:at], []byte("\r\n\r\n")) {
			return nil, fmt.Errorf("attachment %d is not where go-mail should have written it", i)
		}
		out = append(out, rest[:at]...)
		out = b.appendEncoded(out)
		rest = rest[at+len(b.mark):]
	}
	return append(out, rest...), nil
}
