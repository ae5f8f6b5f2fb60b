package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"reflect"

	"github.com/mailgate/mailgate/internal/compose"
)

// Reading request bodies without the copies.
//
// A 10 MB attachment arrives as a 13.3 MB JSON body (base64) or a 10 MB
// multipart part. What a request needs is that body (or the part), the
// decoded attachment and the rendered message; everything here avoids a
// fourth and fifth copy: io.ReadAll, not knowing the size, reads into
// growing chunks and copies them into a final slice (twice the body), and
// json.Decoder copies its input into a buffer of its own that it doubles
// as it goes (two to four times the body).

// readSized reads r to its end into one buffer of size bytes (the
// Content-Length, or an upper bound of the part being read), without
// io.ReadAll's chunks and final copy. A size of 0 or less (unknown) falls
// back to io.ReadAll; a reader longer than size is still read to its end.
// When less than 7/8 of the buffer is used it is copied to its length, so
// that an upper bound that was far off does not pin memory.
func readSized(r io.Reader, size int64) ([]byte, error) {
	if size <= 0 {
		return io.ReadAll(r)
	}
	b, err := readInto(r, make([]byte, 0, size))
	if err == nil && cap(b)-len(b) > cap(b)/8 {
		b = bytes.Clone(b)
	}
	return b, err
}

// readInto reads r to its end into b's spare capacity, and beyond it the
// ordinary way if r is longer than expected.
func readInto(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			// Expected: the next read says EOF. Otherwise the size was
			// wrong and the rest is read the ordinary way.
			rest, err := io.ReadAll(r)
			return append(b, rest...), err
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// A large attachment is read into a buffer with room for the whole
// rendered message, which compose.Build then renders in it
// (compose.Attachment.Owned) instead of allocating another buffer of the
// message's size: for 10 MB, 13.7 MB of base64 lines.

// jsonRoom is what a JSON body of size bytes is read into: the body, and
// for a large one the room for its last attachment's base64 to be
// rendered in lines of 76 characters and CRLF (2/76 more) after the
// message's header and text. A small body gets no more than its size.
func jsonRoom(size int64) int64 {
	if size < 256<<10 {
		return size
	}
	return size + size/32 + 16<<10
}

// readAttachment reads a multipart file part of at most bound bytes (0 or
// less: unknown) into a buffer with room to render the message in, with
// headroom bytes for the rest of the message (header, text, other parts).
// When the part turns out much smaller than bound, it is copied into a
// buffer of the room it needs, so that a far-off bound does not pin memory.
func readAttachment(r io.Reader, bound int64, headroom int) ([]byte, error) {
	if bound <= 0 {
		return io.ReadAll(r)
	}
	room := func(n int) int { return compose.EncodedLen(n) + headroom }
	b, err := readInto(r, make([]byte, 0, room(int(bound))))
	if err != nil {
		return nil, err
	}
	if need := room(len(b)); cap(b)-need > cap(b)/8 {
		b = append(make([]byte, 0, need), b...)
	}
	return b, nil
}

// countingReader counts the bytes read through it, so that parseMultipart
// knows how much of the body a part can still be.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// jsonContent is an attachment's content: standard base64 in a JSON
// string, kept where it is in the request body until decode decodes it
// there, over itself (a []byte field would decode it into a new buffer,
// and also take an array of numbers). A bad encoding is reported by decode
// rather than by encoding/json, which does not say which attachment it was
// in; the API names the field (attachments[i].content).
type jsonContent struct {
	// src is the string's content, in the body when it has no escapes.
	// decode overwrites it, so it may be called once, when nothing else
	// reads the body any more.
	src   []byte
	valid bool // not null
}

func (c *jsonContent) UnmarshalJSON(b []byte) error {
	*c = jsonContent{}
	if string(b) == "null" {
		return nil
	}
	if len(b) < 2 || b[0] != '"' {
		return &json.UnmarshalTypeError{Value: "non-string", Type: reflect.TypeFor[string](), Field: "attachments.content"}
	}
	s := b[1 : len(b)-1]
	if bytes.IndexByte(s, '\\') >= 0 {
		// Some encoders escape "/" as "\/", or break lines as "\r\n"
		// (which base64 decoders skip); unquoting costs a copy.
		var u string
		if err := json.Unmarshal(b, &u); err != nil {
			return err
		}
		s = []byte(u)
		k := 0
		for _, ch := range s {
			if ch != '\r' && ch != '\n' {
				s[k] = ch
				k++
			}
		}
		s = s[:k]
	}
	c.src, c.valid = s, true
	return nil
}

// decode decodes the content over itself, a block at a time through a
// small buffer: each block's bytes are shorter than its base64, so the
// decoded bytes never overtake what is still to be read. The result
// shares the body's array (and its capacity up to the body's end).
func (c *jsonContent) decode() ([]byte, error) {
	if !c.valid {
		return nil, nil
	}
	const in = 4 << 10 // base64 characters per block, 3 KiB decoded
	var block [in / 4 * 3]byte
	s, w := c.src, 0
	for r := 0; r < len(s); {
		end := min(len(s), r+in)
		n, err := base64.StdEncoding.Decode(block[:], s[r:end])
		if err != nil {
			return nil, err
		}
		if end < len(s) && n < len(block) {
			return nil, errors.New("base64 padding before the end")
		}
		w += copy(s[w:], block[:n])
		r = end
	}
	return s[:w], nil
}

// jsonSkeleton returns raw, which must be valid JSON, with every string
// value replaced by "": the same keys and nesting without the payload. The
// check for unknown fields decodes the skeleton with
// json.Decoder.DisallowUnknownFields, which matches keys exactly as the
// decoding of raw did, but without copying or rescanning 13 MB of base64
// (json.Unmarshal has no such option and json.Decoder copies its input).
func jsonSkeleton(raw []byte) []byte {
	out := make([]byte, 0, 1024)
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '"' {
			if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				out = append(out, c)
			}
			i++
			continue
		}
		end := jsonStringEnd(raw, i)
		next := end
		for next < len(raw) && (raw[next] == ' ' || raw[next] == '\t' || raw[next] == '\r' || raw[next] == '\n') {
			next++
		}
		if next < len(raw) && raw[next] == ':' {
			out = append(out, raw[i:end]...) // a key
		} else {
			out = append(out, '"', '"')
		}
		i = end
	}
	return out
}

// jsonStringEnd returns the index just past the closing quote of the
// string that opens at raw[start] in valid JSON.
func jsonStringEnd(raw []byte, start int) int {
	i := start + 1
	for {
		k := bytes.IndexByte(raw[i:], '"')
		if k < 0 {
			return len(raw) // not valid JSON after all
		}
		i += k
		// The quote is escaped when an odd number of backslashes precede it.
		backslashes := 0
		for j := i - 1; raw[j] == '\\'; j-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return i + 1
		}
		i++
	}
}
