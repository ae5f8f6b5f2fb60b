package compose

import "fmt"

// Error codes, the same strings as the API's problem codes (the `code` of
// the problem documents in openapi/openapi.yaml).
const (
	// CodeInvalidBody: the message is malformed (broken MIME structure, bad
	// transfer encoding, truncated header). The API answers 400.
	CodeInvalidBody = "invalid_body"
	// CodeValidationFailed: the message is well-formed but not acceptable
	// (bad address, header injection, no recipient, no body, forbidden
	// header). The API answers 422.
	CodeValidationFailed = "validation_failed"
)

// Error is a problem with the submission itself, as opposed to a failure of
// mailgate. Field names the input that is wrong, in the API's terms
// ("to[1]", "headers.X-Foo", "attachments[0].filename"); it is empty when the
// problem concerns the whole raw message.
type Error struct {
	Code    string
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeValidationFailed, Field: field, Message: fmt.Sprintf(format, args...)}
}

func malformed(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidBody, Field: field, Message: fmt.Sprintf(format, args...)}
}

// withField returns a copy of e that names field; ParseAddress does not know
// where its input came from.
func withField(e *Error, field string) *Error {
	c := *e
	c.Field = field
	return &c
}
