package contract

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/mailgate/mailgate/openapi"
)

// recorder is a testing.TB that records failures instead of reporting them,
// so the tests can assert that Check fails. Everything else goes to the real
// test.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
	r.FailNow()
}

// exchange is one request and the response a server might give to it.
type exchange struct {
	method, target string
	header         http.Header
	reqBody        []byte

	status     int
	respHeader http.Header
	respBody   string
}

func (e exchange) run(t *testing.T, v *Validator) []string {
	t.Helper()
	req := httptest.NewRequest(e.method, e.target, bytes.NewReader(e.reqBody))
	for k, vs := range e.header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	for k, vs := range e.respHeader {
		rec.Header()[k] = vs
	}
	rec.WriteHeader(e.status)
	if _, err := io.WriteString(rec, e.respBody); err != nil {
		t.Fatal(err)
	}
	resp := rec.Result()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}

	r := &recorder{TB: t}
	v.Check(r, req, e.reqBody, resp, body)
	return r.failures
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

const (
	bearer       = "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"
	validSubmit  = `{"to":["ops@contoso.com","Jane <jane@contoso.com>"],"subject":"Disk almost full","text":"95%","metadata":{"ticket":"4711"}}`
	accepted     = `{"id":"01J9Z8K4Q6","status":"queued"}`
	forbidden    = `{"type":"about:blank","title":"From address not allowed","status":403,"code":"from_not_allowed","detail":"app monitoring may send as *@alerts.contoso.com","errors":[{"field":"from","message":"not allowed"}]}`
	messageState = `{"id":"01J9Z8K4Q6","status":"deferred","from":"Alerts <alerts@alerts.contoso.com>","to":["ops@contoso.com"],"cc":[],"subject":"Disk almost full","route":"m365","attempts":2,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:09:05.123+01:00","last_response":{"code":432,"enhanced_code":"4.3.2","text":"Concurrent connections limit exceeded"},"events":[{"at":"2026-01-02T03:04:05Z","status":"queued"},{"at":"2026-01-02T03:09:05Z","status":"deferred","detail":"432 4.3.2 Concurrent connections limit exceeded"}],"metadata":{"ticket":"4711"}}`
)

var (
	jsonRequest  = hdr("Authorization", bearer, "Content-Type", "application/json")
	jsonResponse = hdr("Content-Type", "application/json")
	problem      = hdr("Content-Type", "application/problem+json")
	location     = hdr("Content-Type", "application/json", "Location", "/v1/messages/01J9Z8K4Q6")
)

func problemBody(status int, code string) string {
	return `{"type":"about:blank","title":"t","status":` + strconv.Itoa(status) + `,"code":"` + code + `"}`
}

func multipartBody(t *testing.T) (contentType string, body []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, kv := range [][2]string{{"to", "ops@contoso.com"}, {"to", "jane@contoso.com"}, {"subject", "report"}, {"text", "attached"}} {
		if err := w.WriteField(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	part, err := w.CreatePart(textproto.MIMEHeader{
		"Content-Disposition": {`form-data; name="attachment"; filename="report.pdf"`},
		"Content-Type":        {"application/pdf"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := part.Write([]byte("%PDF-1.7\x00\x01")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), buf.Bytes()
}

func TestSpecLoads(t *testing.T) {
	t.Parallel()
	v := New(t)
	if !v.doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi.yaml is OpenAPI %s, want 3.1", v.doc.OpenAPI)
	}
	if err := v.doc.Validate(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRejectsInvalidSpec(t *testing.T) {
	t.Parallel()
	for name, spec := range map[string]string{
		"not yaml":      "{",
		"no info":       "openapi: 3.1.0\npaths: {}\n",
		"dangling $ref": "openapi: 3.1.0\ninfo: {title: x, version: '1'}\npaths:\n  /x:\n    get:\n      responses:\n        '200': {$ref: '#/components/responses/Nope'}\n",
	} {
		if _, err := load(t.Context(), []byte(spec)); err == nil {
			t.Errorf("%s: load succeeded, want an error", name)
		}
	}
}

// Every error answer is a problem document: clients parse errors one way.
func TestErrorsAreProblems(t *testing.T) {
	t.Parallel()
	v := New(t)
	for path, item := range v.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status, ref := range op.Responses.Map() {
				if status[0] != '4' && status[0] != '5' {
					continue
				}
				content := ref.Value.Content
				if len(content) != 1 || content["application/problem+json"] == nil {
					t.Errorf("%s %s %s: want only application/problem+json, have %v", method, path, status, keys(content))
				}
			}
		}
	}
}

func keys(c openapi3.Content) []string {
	var ks []string
	for k := range c {
		ks = append(ks, k)
	}
	return ks
}

func TestCheck(t *testing.T) {
	t.Parallel()
	v := New(t)
	formType, formBody := multipartBody(t)

	tests := []struct {
		name     string
		exchange exchange
		wantFail string // a substring of the failure; "" means Check must pass
	}{
		{
			name:     "json submit accepted",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit), status: 202, respHeader: location, respBody: accepted},
		},
		{
			name: "json submit with string recipient and attachments",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest,
				reqBody: []byte(`{"from":"a@contoso.com","to":"ops@contoso.com","html":"<img src=cid:logo>","attachments":[{"filename":"logo.png","content":"iVBORw0KGgo=","content_id":"logo"}]}`),
				status:  202, respHeader: location, respBody: accepted},
		},
		{
			name: "basic auth and idempotency key",
			exchange: exchange{method: "POST", target: "/v1/messages",
				header:  hdr("Authorization", "Basic dTp0b2tlbg==", "Content-Type", "application/json", "Idempotency-Key", "k-1"),
				reqBody: []byte(validSubmit), status: 202, respHeader: location, respBody: accepted},
		},
		{
			name: "text/plain one-liner",
			exchange: exchange{method: "POST", target: "/v1/messages?to=ops@contoso.com&to=jane@contoso.com",
				header:  hdr("Authorization", bearer, "Content-Type", "text/plain; charset=utf-8", "Subject", "hi"),
				reqBody: []byte("disk full"), status: 202, respHeader: location, respBody: accepted},
		},
		{
			name: "multipart with a file",
			exchange: exchange{method: "POST", target: "/v1/messages",
				header:  hdr("Authorization", bearer, "Content-Type", formType),
				reqBody: formBody, status: 202, respHeader: location, respBody: accepted},
		},
		{
			name: "raw message",
			exchange: exchange{method: "POST", target: "/v1/messages/raw?to=ops@contoso.com",
				header:  hdr("Authorization", bearer, "Content-Type", "message/rfc822"),
				reqBody: []byte("From: a@contoso.com\r\nTo: b@contoso.com\r\nSubject: x\r\n\r\nbody\r\n"),
				status:  202, respHeader: location, respBody: accepted},
		},
		{
			name:     "problem accepted",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit), status: 403, respHeader: problem, respBody: forbidden},
		},
		{
			name: "rate limited with Retry-After",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit),
				status: 429, respHeader: hdr("Content-Type", "application/problem+json", "Retry-After", "12"), respBody: problemBody(429, "rate_limited")},
		},
		{
			name: "malformed request answered 400",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(`{"to":`),
				status: 400, respHeader: problem, respBody: problemBody(400, "invalid_body")},
		},
		{
			name: "unsupported content type answered 415",
			exchange: exchange{method: "POST", target: "/v1/messages", header: hdr("Authorization", bearer, "Content-Type", "application/xml"), reqBody: []byte(`<m/>`),
				status: 415, respHeader: problem, respBody: problemBody(415, "unsupported_media_type")},
		},
		{
			name: "no credentials answered 401",
			exchange: exchange{method: "GET", target: "/v1/routes",
				status: 401, respHeader: hdr("Content-Type", "application/problem+json", "WWW-Authenticate", `Bearer realm="mailgate"`), respBody: problemBody(401, "unauthorized")},
		},
		{
			name: "message status",
			exchange: exchange{method: "GET", target: "/v1/messages/01J9Z8K4Q6", header: hdr("Authorization", bearer),
				status: 200, respHeader: jsonResponse, respBody: messageState},
		},
		{
			name: "message status before any attempt",
			exchange: exchange{method: "GET", target: "/v1/messages/01J9Z8K4Q6", header: hdr("Authorization", bearer),
				status: 200, respHeader: jsonResponse,
				respBody: `{"id":"01J9Z8K4Q6","status":"queued","from":"a@contoso.com","to":["b@contoso.com"],"subject":"","route":"relay","attempts":0,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z","last_response":null,"events":[]}`},
		},
		{
			name: "message not found",
			exchange: exchange{method: "GET", target: "/v1/messages/nope", header: hdr("Authorization", bearer),
				status: 404, respHeader: problem, respBody: problemBody(404, "not_found")},
		},
		{
			name: "routes",
			exchange: exchange{method: "GET", target: "/v1/routes", header: hdr("Authorization", bearer), status: 200, respHeader: jsonResponse,
				respBody: `{"routes":[{"name":"m365","type":"smtp-auth","state":"held","reason":"535 5.7.3: check the app's SMTP.SendAsApp grant","limits":{"messages_per_minute":30,"max_connections":3,"recipients_per_day":10000},"usage":{"connections":1,"messages_last_minute":4,"recipients_last_day":120}},{"name":"relay","type":"connector","state":"ok"}]}`},
		},
		{
			name:     "healthz",
			exchange: exchange{method: "GET", target: "/healthz", status: 200, respHeader: jsonResponse, respBody: `{"status":"ok"}`},
		},
		{
			name:     "readyz not ready",
			exchange: exchange{method: "GET", target: "/readyz", status: 503, respHeader: problem, respBody: problemBody(503, "not_ready")},
		},
		{
			name:     "the spec itself",
			exchange: exchange{method: "GET", target: "/openapi.yaml", status: 200, respHeader: hdr("Content-Type", "application/yaml"), respBody: string(openapi.Spec())},
		},
		{
			name: "openmetrics",
			exchange: exchange{method: "GET", target: "/metrics", header: hdr("Accept", "application/openmetrics-text"), status: 200,
				respHeader: hdr("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8"), respBody: "# TYPE up gauge\nup 1\n# EOF\n"},
		},
		{
			name: "metrics",
			exchange: exchange{method: "GET", target: "/metrics", status: 200,
				respHeader: hdr("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), respBody: "# TYPE up gauge\nup 1\n"},
		},

		// What Check must catch.
		{
			name:     "202 without id",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit), status: 202, respHeader: location, respBody: `{"status":"queued"}`},
			wantFail: "id",
		},
		{
			name:     "202 without Location",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit), status: 202, respHeader: jsonResponse, respBody: accepted},
			wantFail: "Location",
		},
		{
			name:     "202 with an undocumented field",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit), status: 202, respHeader: location, respBody: `{"id":"x","status":"queued","extra":1}`},
			wantFail: "extra",
		},
		{
			name: "problem code not in the enum",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit),
				status: 403, respHeader: problem, respBody: problemBody(403, "access_denied")},
			wantFail: "code",
		},
		{
			name: "problem code of another status",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit),
				status: 403, respHeader: problem, respBody: problemBody(403, "validation_failed")},
			wantFail: "code",
		},
		{
			name: "undocumented status",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit),
				status: 409, respHeader: problem, respBody: problemBody(409, "validation_failed")},
			wantFail: "status is not supported",
		},
		{
			name: "wrong content type",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit),
				status: 403, respHeader: jsonResponse, respBody: forbidden},
			wantFail: "Content-Type",
		},
		{
			name: "429 without Retry-After",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(validSubmit),
				status: 429, respHeader: problem, respBody: problemBody(429, "rate_limited")},
			wantFail: "Retry-After",
		},
		{
			name:     "success without credentials",
			exchange: exchange{method: "GET", target: "/v1/routes", status: 200, respHeader: jsonResponse, respBody: `{"routes":[]}`},
			wantFail: "accepted a request that breaks openapi.yaml",
		},
		{
			name: "success for a request without text or html",
			exchange: exchange{method: "POST", target: "/v1/messages", header: jsonRequest, reqBody: []byte(`{"to":"a@contoso.com"}`),
				status: 202, respHeader: location, respBody: accepted},
			wantFail: "accepted a request that breaks openapi.yaml",
		},
		{
			name: "unknown message status",
			exchange: exchange{method: "GET", target: "/v1/messages/x", header: hdr("Authorization", bearer), status: 200, respHeader: jsonResponse,
				respBody: strings.Replace(messageState, `"status":"deferred","from"`, `"status":"bounced","from"`, 1)},
			wantFail: "status",
		},
		{
			name: "timestamp not RFC 3339",
			exchange: exchange{method: "GET", target: "/v1/messages/x", header: hdr("Authorization", bearer), status: 200, respHeader: jsonResponse,
				respBody: strings.Replace(messageState, `"created_at":"2026-01-02T03:04:05Z"`, `"created_at":"Jan 2 2026"`, 1)},
			wantFail: "created_at",
		},
		{
			name: "held route without reason",
			exchange: exchange{method: "GET", target: "/v1/routes", header: hdr("Authorization", bearer), status: 200, respHeader: jsonResponse,
				respBody: `{"routes":[{"name":"m365","type":"smtp-auth","state":"held"}]}`},
			wantFail: "reason",
		},
		{
			name:     "undocumented path",
			exchange: exchange{method: "GET", target: "/v1/nothing", status: 404, respHeader: problem, respBody: problemBody(404, "not_found")},
			wantFail: "no operation",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			failures := tt.exchange.run(t, v)
			if tt.wantFail == "" {
				for _, f := range failures {
					t.Errorf("Check failed a conforming exchange:\n%s", f)
				}
				return
			}
			if len(failures) == 0 {
				t.Fatalf("Check passed, want a failure mentioning %q", tt.wantFail)
			}
			msg := strings.Join(failures, "\n")
			if !strings.Contains(msg, tt.wantFail) {
				t.Errorf("failure does not mention %q:\n%s", tt.wantFail, msg)
			}
			t.Logf("as expected, Check failed with:\n%s", msg) // what users of Check will read
		})
	}
}
