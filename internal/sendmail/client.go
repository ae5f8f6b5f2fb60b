package sendmail

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client submits messages to a mailgate server.
type Client struct {
	URL       string // the server's base URL
	Token     string
	HTTP      *http.Client
	UserAgent string
}

// Result is the server's answer to one submission, or why there was none.
type Result struct {
	Status int    // HTTP status; 0 when no answer came
	ID     string // the message id, on 202
	Reason string // one line for stderr or the failed/ spool
}

// Exit is the sysexits.h status the answer means, and whether the message
// may be tried again later. 202 is the only success. 400, 413, 415 and 422
// say the message is invalid (EX_DATAERR), 401 and 403 that the token or
// the policy refuses it (EX_NOPERM); every other answer, and no answer, is
// temporary (EX_TEMPFAIL): 429 and 5xx by definition, anything else (a
// proxy's 404, a redirect) because a fixed configuration can still send it.
func (r Result) Exit() (code int, temporary bool) {
	switch r.Status {
	case http.StatusAccepted:
		return ExitOK, false
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return ExitDataErr, false
	case http.StatusUnauthorized, http.StatusForbidden:
		return ExitNoPerm, false
	}
	return ExitTempFail, true
}

// Submit posts msg to /v1/messages/raw with key as its Idempotency-Key, so
// a later retry of the same message is stored once.
func (c *Client) Submit(ctx context.Context, key string, to []string, msg []byte) Result {
	u := strings.TrimRight(c.URL, "/") + "/v1/messages/raw"
	if len(to) > 0 {
		u += "?" + url.Values{"to": to}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(msg))
	if err != nil {
		return Result{Reason: fmt.Sprintf("bad server url: %v", err)}
	}
	req.Header.Set("Content-Type", "message/rfc822")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Idempotency-Key", key)
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Result{Reason: "mailgate not reachable: " + oneLine(err.Error())}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	res := Result{Status: resp.StatusCode}
	if resp.StatusCode == http.StatusAccepted {
		var ok struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &ok)
		res.ID = ok.ID
		return res
	}
	res.Reason = fmt.Sprintf("mailgate answered %s", resp.Status)
	// An RFC 9457 problem document, as openapi/openapi.yaml describes.
	var p struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
		Title  string `json:"title"`
		Errors []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &p) == nil && (p.Code != "" || p.Detail != "" || p.Title != "") {
		if p.Code != "" {
			res.Reason += " (" + p.Code + ")"
		}
		if d := p.Detail; d != "" || p.Title != "" {
			if d == "" {
				d = p.Title
			}
			res.Reason += ": " + d
		}
		for _, e := range p.Errors {
			res.Reason += "; " + e.Field + ": " + e.Message
		}
	}
	res.Reason = oneLine(res.Reason)
	return res
}

// oneLine keeps a reason on one line of stderr or syslog.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
