package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"reflect"
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
	b := make([]byte, 0, size)
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
			if cap(b)-len(b) > cap(b)/8 {
				b = bytes.Clone(b)
			}
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
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
// string, decoded straight from the request body while encoding/json
// decodes the rest (a []byte field would do the same but also take an
// array of numbers). A bad encoding is kept rather than returned: encoding/json
// reports a base64 error without saying which attachment it was in, and
// the API names the field (attachments[i].content).
type jsonContent struct {
	data []byte
	err  error
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
		// Some encoders escape "/" as "\/"; unquoting costs a copy.
		var u string
		if err := json.Unmarshal(b, &u); err != nil {
			return err
		}
		s = []byte(u)
	}
	data := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(data, s)
	if err != nil {
		c.err = err
		return nil
	}
	c.data = data[:n]
	return nil
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
