package api

import (
	"fmt"
	"net/http"
	"strings"
)

// Bounds on the shape of a request, checked before it is decoded.
//
// A body within the app's size limit can still hold millions of tiny
// things, each costing far more to decode than its bytes: an entry of a
// JSON object becomes a map entry, a multipart part a parsed header, a
// form field a slice. The shape is therefore counted first, in one pass
// that allocates nothing, and a request over a bound is refused with 422
// before the costly step. The message-level bounds (header fields, MIME
// parts, attachments, extra headers) belong to package compose, which
// every door shares.
const (
	// maxJSONEntries bounds the members of any one JSON object or array
	// of a submission: above any app's recipients per message and every
	// compose bound.
	maxJSONEntries = 1000
	// maxJSONDepth bounds nesting; a submission is three levels deep.
	maxJSONDepth = 8
	// maxFormFields bounds the fields of a URL-encoded form or a query
	// string, and the addresses of one comma-separated list.
	maxFormFields = 1000
	// maxFormParts bounds the parts of a multipart form: the fields plus
	// at most compose.MaxAttachments files.
	maxFormParts = 250
)

// checkJSONShape refuses JSON whose containers have more than
// maxJSONEntries members (a recipient list as too_many_recipients) or nest
// deeper than maxJSONDepth. raw need not be valid JSON: what is malformed
// is left to the decoder to report.
func checkJSONShape(raw []byte) error {
	var (
		entries    [maxJSONDepth + 1]int  // members seen in each open container
		empty      [maxJSONDepth + 1]bool // the open container has no member yet
		recipients [maxJSONDepth + 1]bool // the open container is to, cc or bcc
		key        string                 // the last member name at depth 1
	)
	depth := 0
	member := func() {
		if depth > 0 && empty[depth] {
			empty[depth], entries[depth] = false, 1
		}
	}
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '"':
			member()
			end := jsonStringEnd(raw, i)
			if depth == 1 {
				// The member name (or value) last seen; only short ones
				// can be to, cc or bcc, so nothing long is copied.
				key = ""
				if n := end - i - 2; n >= 0 && n <= 3 { // n < 0: unterminated, as in `{"`
					key = string(raw[i+1 : end-1])
				}
			}
			i = end - 1
		case '{', '[':
			member()
			if depth++; depth > maxJSONDepth {
				return errInvalidBody(fmt.Sprintf("the JSON nests deeper than %d levels", maxJSONDepth))
			}
			entries[depth], empty[depth] = 0, true
			recipients[depth] = depth == 2 && (key == "to" || key == "cc" || key == "bcc")
		case '}', ']':
			if depth > 0 {
				depth--
			}
		case ',':
			if entries[depth]++; entries[depth] > maxJSONEntries {
				if recipients[depth] {
					return problem(http.StatusUnprocessableEntity, CodeTooManyRecipients, "Too many recipients",
						fmt.Sprintf("%s lists more than %d addresses", key, maxJSONEntries))
				}
				return errValidation(fmt.Sprintf("the JSON has an object or array of more than %d entries", maxJSONEntries))
			}
		case ' ', '\t', '\r', '\n', ':':
		default: // a number, true, false or null
			member()
		}
	}
	return nil
}

// checkFieldCount refuses a URL-encoded form or query string of more than
// maxFormFields fields, before it is parsed, as malformed (net/url itself
// refuses more than 10,000).
func checkFieldCount(what, s string) error {
	if strings.Count(s, "&")+strings.Count(s, ";") >= maxFormFields {
		return errInvalidBody(fmt.Sprintf("the %s has more than %d fields", what, maxFormFields))
	}
	return nil
}

// checkListLength refuses a comma-separated address list of more than
// maxFormFields entries before it is parsed.
func checkListLength(field, s string) error {
	if strings.Count(s, ",") >= maxFormFields {
		return problem(http.StatusUnprocessableEntity, CodeTooManyRecipients, "Too many recipients",
			fmt.Sprintf("%s lists more than %d addresses", field, maxFormFields),
			FieldError{Field: field, Message: "too many addresses"})
	}
	return nil
}
