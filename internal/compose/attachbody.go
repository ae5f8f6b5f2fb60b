package compose

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// base64Line is the input of one base64 body line: 57 bytes make the 76
// characters RFC 2045 section 6.8 allows, which is also where go-mail
// breaks its lines.
const base64Line = 57

// EncodedLen is the size n bytes of attachment take in a rendered
// message: base64 lines of at most 76 characters, each ended by CRLF. A
// caller that wants Build to render into an Owned attachment's array gives
// that array this much room plus some for the rest of the message.
func EncodedLen(n int) int {
	return base64.StdEncoding.EncodedLen(n) + 2*((n+base64Line-1)/base64Line)
}

// attachmentBody stands in for an attachment's content while go-mail
// renders the message: go-mail is given a random token to encode instead of
// the content, and splice puts the content, base64-encoded, where the
// token's encoding landed. go-mail would base64-encode the content into a
// buffer it grows as it goes and then copy it out, about five times the
// attachment in allocations (see the package comment).
//
// The text and HTML parts go the same way (newTextBody), for the same
// reason on a smaller scale: go-mail quoted-printable-encodes a part into a
// buffer it grows from nothing, from a copy of the string, and then copies
// it out. Their encoding is done beforehand, into a buffer sized once, by
// appendQP, which writes what go-mail's encoder writes (mime/quotedprintable,
// as go-mail v0.8.1 msgWriter.writeBody does for EncodingQP).
type attachmentBody struct {
	content []byte
	// owned: the message may be rendered in content's array (Attachment.Owned).
	owned bool
	// mark is the token's body as go-mail writes it: one base64 line and
	// its CRLF. 24 random bytes make a line no client can predict.
	mark []byte
	// encoded, for a text or HTML part, is its body already encoded,
	// which goes in as it is.
	encoded []byte
	text    bool
}

// newTextBody returns the body of a text or HTML part. Its mark is also
// the token to give go-mail in the part's place: 32 hexadecimal digits of
// 16 random bytes, which quoted-printable leaves as they are, on one line
// without a line break (go-mail ends the part as the encoder leaves it).
func newTextBody(s string) *attachmentBody {
	var random [16]byte
	_, _ = rand.Read(random[:]) // crypto/rand.Read never fails
	return &attachmentBody{mark: hex.AppendEncode(nil, random[:]), encoded: encodeQP(s), text: true}
}

// encodeQP is s in quoted-printable as go-mail writes a text part. Most
// text grows by a soft line break every 75 characters and CR before each
// LF; the buffer grows only for text with many characters to escape.
func encodeQP(s string) []byte {
	return appendQP(make([]byte, 0, len(s)+len(s)/16+64), s)
}

func newAttachmentBody(content []byte) (*attachmentBody, []byte) {
	token := make([]byte, 24)
	_, _ = rand.Read(token) // crypto/rand.Read never fails
	mark := base64.StdEncoding.AppendEncode(nil, token)
	return &attachmentBody{content: content, mark: append(mark, '\r', '\n')}, token
}

// encodedLen is the size of the content as go-mail would write it.
func (a *attachmentBody) encodedLen() int {
	if a.text {
		return len(a.encoded)
	}
	return EncodedLen(len(a.content))
}

// appendEncoded appends the content in base64 lines (a text part: its
// encoding) to dst, which must have the room (encodedLen) so that nothing
// is reallocated.
func (a *attachmentBody) appendEncoded(dst []byte) []byte {
	if a.text {
		return append(dst, a.encoded...)
	}
	for c := a.content; len(c) > 0; {
		n := min(len(c), base64Line)
		dst = base64.StdEncoding.AppendEncode(dst, c[:n])
		dst = append(dst, '\r', '\n')
		c = c[n:]
	}
	return dst
}

// encodeInPlace is appendEncoded for content that lies in dst's own array,
// ending exactly where its encoding will end (at len(dst)+encodedLen()).
// Each block of input is copied out before its encoding is written: the
// encoding of the first k lines ends 21·k bytes after their input would
// (76+2 characters for 57 bytes), and the content starts encodedLen-len
// bytes (at least 21 per full line) after the encoding does, so a write
// never reaches input not yet copied.
func (a *attachmentBody) encodeInPlace(dst []byte) []byte {
	var block [64 * base64Line]byte
	for c := a.content; len(c) > 0; {
		k := copy(block[:], c)
		c = c[k:]
		for in := block[:k]; len(in) > 0; {
			n := min(len(in), base64Line)
			dst = base64.StdEncoding.AppendEncode(dst, in[:n])
			dst = append(dst, '\r', '\n')
			in = in[n:]
		}
	}
	return dst
}

// splice returns skeleton, go-mail's rendering with tokens for bodies, with
// each token replaced by its attachment's encoded content. bodies must be
// in the order go-mail writes them. The result is allocated once, at its
// final size plus room for extra more bytes, or not at all when an owned
// attachment's array has that room: then the message is rendered in it,
// the attachment's content moved to the end of where its encoding goes
// and encoded forwards over itself.
func splice(skeleton []byte, bodies []*attachmentBody, extra int) ([]byte, error) {
	size := len(skeleton) + extra
	at := make([]int, len(bodies)) // where each token is in skeleton
	for i, from := 0, 0; i < len(bodies); i++ {
		b := bodies[i]
		// A part's body follows the blank line that ends its header.
		k := bytes.Index(skeleton[from:], b.mark)
		if k < 0 || !bytes.HasSuffix(skeleton[:from+k], []byte("\r\n\r\n")) {
			return nil, fmt.Errorf("body %d is not where go-mail should have written it", i)
		}
		at[i] = from + k
		from = at[i] + len(b.mark)
		size += b.encodedLen() - len(b.mark)
	}
	host := -1 // the owned body whose array the message is rendered in
	for i, b := range bodies {
		if b.owned && cap(b.content) >= size && (host < 0 || len(b.content) > len(bodies[host].content)) {
			host = i
		}
	}
	var out []byte
	if host < 0 {
		out = make([]byte, 0, size)
	} else {
		h := bodies[host]
		start := at[host] // where h's encoding starts in the result
		for _, b := range bodies[:host] {
			start += b.encodedLen() - len(b.mark)
		}
		buf := h.content[:cap(h.content)]
		shift := start + h.encodedLen() - len(h.content)
		copy(buf[shift:], h.content) // a memmove: the ranges overlap
		h = &attachmentBody{content: buf[shift : shift+len(h.content)], mark: h.mark}
		bodies = append([]*attachmentBody(nil), bodies...)
		bodies[host] = h
		out = buf[:0]
	}
	prev := 0
	for i, b := range bodies {
		out = append(out, skeleton[prev:at[i]]...)
		if i == host {
			out = b.encodeInPlace(out)
		} else {
			out = b.appendEncoded(out)
		}
		prev = at[i] + len(b.mark)
	}
	return append(out, skeleton[prev:]...), nil
}
