package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"
)

// Problem codes: stable, machine-readable, listed in openapi/openapi.yaml.
const (
	CodeInvalidBody          = "invalid_body"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeFromNotAllowed       = "from_not_allowed"
	CodeRecipientNotAllowed  = "recipient_not_allowed"
	CodeAppDisabled          = "app_disabled"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeTooLarge             = "message_too_large"
	CodeBatchTooLarge        = "batch_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeValidationFailed     = "validation_failed"
	CodeTooManyRecipients    = "too_many_recipients"
	CodeRateLimited          = "rate_limited"
	CodeQueueUnavailable     = "queue_unavailable"
	CodeQueueFull            = "queue_full"
	CodeAppQueueFull         = "app_queue_full"
	CodeNotReady             = "not_ready"
	CodeInternal             = "internal_error"
	CodeBodyTooSlow          = "body_too_slow"
)

// FieldError names one offending field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Problem is an RFC 9457 problem document with mailgate's stable code. It
// is also an error, so handlers return it and the error handler writes it.
type Problem struct {
	Type       string        `json:"type"`
	Title      string        `json:"title"`
	Status     int           `json:"status"`
	Code       string        `json:"code"`
	Detail     string        `json:"detail,omitempty"`
	Errors     []FieldError  `json:"errors,omitempty"`
	retryAfter time.Duration // sent as Retry-After when set
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

func problem(status int, code, title, detail string, errs ...FieldError) *Problem {
	return &Problem{Type: "about:blank", Title: title, Status: status, Code: code, Detail: detail, Errors: errs}
}

func writeProblem(c *echo.Context, p *Problem) error {
	h := c.Response().Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.retryAfter > 0 {
		secs := int((p.retryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	if p.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="mailgate", Basic realm="mailgate"`)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return err
	}
	c.Response().WriteHeader(p.Status)
	_, err := c.Response().Write(b.Bytes())
	return err
}

func errUnauthorized(detail string) *Problem {
	return problem(http.StatusUnauthorized, CodeUnauthorized, "Unauthorized", detail)
}

func errQueueUnavailable() *Problem {
	return problem(http.StatusServiceUnavailable, CodeQueueUnavailable, "Queue unavailable",
		"the message could not be stored; nothing was queued, try again")
}

func errInvalidBody(detail string, errs ...FieldError) *Problem {
	return problem(http.StatusBadRequest, CodeInvalidBody, "Malformed request body", detail, errs...)
}

func errValidation(detail string, errs ...FieldError) *Problem {
	return problem(http.StatusUnprocessableEntity, CodeValidationFailed, "Validation failed", detail, errs...)
}
