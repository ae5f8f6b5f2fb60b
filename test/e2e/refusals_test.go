package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/testwait"
)

// request is one submission that must be refused.
type refusal struct {
	name        string
	path        string
	contentType string
	auth        string // "" = the monitoring app's token; "-" = none
	body        string
	header      map[string]string
	status      int
	code        string
	field       string // a field the problem must name, when set
}

// Every bad request is refused with the right status and code, and nothing
// reaches the queue.
//
// Not parallel on purpose: it counts the process's goroutines, and Go holds
// the parallel tests back until the sequential ones are done, so nothing else
// starts or stops goroutines while it counts.
func TestRefusedSubmissionsQueueNothing(t *testing.T) {
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")
	many := make([]string, 51)
	for i := range many {
		many[i] = fmt.Sprintf(`"u%d@contoso.com"`, i)
	}
	big := strings.Repeat("x", 300<<10)
	// Warm up, then count goroutines: the table must leave none behind.
	e.do("GET", "/healthz", "", "", nil, nil)
	http.DefaultClient.CloseIdleConnections()
	baseline := runtime.NumGoroutine()

	cases := []refusal{
		{name: "forged From", body: `{"from":"ceo@contoso.com","to":"ops@contoso.com","text":"x"}`,
			status: 403, code: "from_not_allowed", field: "from"},
		{name: "From display name faking an allowed address", body: `{"from":"\"alerts@alerts.contoso.com\" <evil@evil.com>","to":"ops@contoso.com","text":"x"}`,
			status: 422, code: "validation_failed", field: "from"},
		{name: "recipient outside the policy", body: `{"to":["ops@contoso.com","someone@gmail.com"],"text":"x"}`,
			status: 403, code: "recipient_not_allowed"},
		{name: "Bcc outside the policy", body: `{"to":"ops@contoso.com","bcc":"leak@gmail.com","text":"x"}`,
			status: 403, code: "recipient_not_allowed"},
		{name: "CR LF in subject", body: `{"to":"ops@contoso.com","subject":"hi\r\nBcc: leak@gmail.com","text":"x"}`,
			status: 422, code: "validation_failed", field: "subject"},
		{name: "LF in an address", body: `{"to":"ops@contoso.com\nBcc: leak@gmail.com","text":"x"}`,
			status: 422, code: "validation_failed"},
		{name: "CR LF in a custom header", body: `{"to":"ops@contoso.com","text":"x","headers":{"X-A":"1\r\nBcc: leak@gmail.com"}}`,
			status: 422, code: "validation_failed"},
		{name: "Bcc smuggled through headers", body: `{"to":"ops@contoso.com","text":"x","headers":{"Bcc":"leak@gmail.com"}}`,
			status: 422, code: "validation_failed"},
		{name: "CR LF in attachment filename", body: `{"to":"ops@contoso.com","text":"x","attachments":[{"filename":"a\r\nX: y.txt","content":"aGk="}]}`,
			status: 422, code: "validation_failed"},
		{name: "invalid base64 attachment", body: `{"to":"ops@contoso.com","text":"x","attachments":[{"filename":"a.txt","content":"@@@"}]}`,
			status: 400, code: "invalid_body"},
		{name: "oversized message", body: `{"to":"ops@contoso.com","text":"` + big + `"}`,
			status: 413, code: "message_too_large"},
		{name: "oversized raw message", path: "/v1/messages/raw", contentType: "message/rfc822",
			body:   "From: alerts@alerts.contoso.com\r\nTo: ops@contoso.com\r\nSubject: big\r\n\r\n" + big,
			status: 413, code: "message_too_large"},
		{name: "wrong content type", contentType: "application/xml", body: `<mail/>`,
			status: 415, code: "unsupported_media_type"},
		{name: "no content type", contentType: "-", body: `{"to":"ops@contoso.com","text":"x"}`,
			status: 415, code: "unsupported_media_type"},
		{name: "raw with JSON content type", path: "/v1/messages/raw", body: `{"to":"ops@contoso.com","text":"x"}`,
			status: 415, code: "unsupported_media_type"},
		{name: "malformed JSON", body: `{"to":"ops@contoso.com","text":`, status: 400, code: "invalid_body"},
		{name: "JSON with trailing garbage", body: `{"to":"ops@contoso.com","text":"x"} {}`, status: 400, code: "invalid_body"},
		{name: "JSON of the wrong shape", body: `["ops@contoso.com"]`, status: 400, code: "invalid_body"},
		{name: "unknown JSON field", body: `{"to":"ops@contoso.com","text":"x","bodyy":"typo"}`, status: 400, code: "invalid_body"},
		{name: "non-UTF-8 JSON", body: "{\"to\":\"ops@contoso.com\",\"text\":\"\xff\xfe\"}", status: 400, code: "invalid_body"},
		{name: "no recipients", body: `{"subject":"x","text":"x"}`, status: 422, code: "validation_failed", field: "to"},
		{name: "no body", body: `{"to":"ops@contoso.com","subject":"x"}`, status: 422, code: "validation_failed"},
		{name: "invalid address", body: `{"to":"not-an-address","text":"x"}`, status: 422, code: "validation_failed"},
		{name: "too many recipients", body: `{"to":[` + strings.Join(many, ",") + `],"text":"x"}`,
			status: 422, code: "too_many_recipients"},
		{name: "one-liner without recipient", path: "/v1/messages", contentType: "text/plain", body: "hello",
			status: 422, code: "validation_failed"},
		{name: "one-liner with non-UTF-8 charset", path: "/v1/messages?to=ops@contoso.com", contentType: "text/plain; charset=iso-8859-1", body: "h\xe9",
			status: 415, code: "unsupported_media_type"},
		{name: "raw with forged From", path: "/v1/messages/raw", contentType: "message/rfc822",
			body:   "From: ceo@contoso.com\r\nTo: ops@contoso.com\r\nSubject: x\r\n\r\nbody\r\n",
			status: 403, code: "from_not_allowed"},
		{name: "raw that is not MIME", path: "/v1/messages/raw", contentType: "message/rfc822",
			body:   "this is not a message at all",
			status: 400, code: "invalid_body"},
		{name: "no token", auth: "-", body: `{"to":"ops@contoso.com","text":"x"}`, status: 401, code: "unauthorized"},
		{name: "token signed with another key", auth: foreignToken(t), body: `{"to":"ops@contoso.com","text":"x"}`,
			status: 401, code: "unauthorized"},
		{name: "alg none token", auth: noneToken(t), body: `{"to":"ops@contoso.com","text":"x"}`, status: 401, code: "unauthorized"},
		{name: "expired token", auth: expiredToken(t), body: `{"to":"ops@contoso.com","text":"x"}`, status: 401, code: "unauthorized"},
		{name: "token of an unknown app", auth: e.token("ghost"), body: `{"to":"ops@contoso.com","text":"x"}`,
			status: 401, code: "unauthorized"},
		{name: "token of a disabled app", auth: e.token("retired"), body: `{"to":"ops@contoso.com","text":"x"}`,
			status: 403, code: "app_disabled"},
		{name: "Basic with a bad password", auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("x:nope")),
			body: `{"to":"ops@contoso.com","text":"x"}`, status: 401, code: "unauthorized"},
		{name: "admin token cannot send", auth: adminToken(t), body: `{"to":"ops@contoso.com","text":"x"}`,
			status: 403, code: "forbidden"},
		{name: "10,000 recipients", body: `{"to":[` + strings.Repeat(`"a@contoso.com",`, 9999) + `"b@contoso.com"],"text":"x"}`,
			status: 422, code: "too_many_recipients"},
		{name: "too many recipients in raw ?to=", path: "/v1/messages/raw?" + strings.Repeat("to=a@contoso.com&", 600), contentType: "message/rfc822",
			body: "From: alerts@alerts.contoso.com\r\nSubject: x\r\n\r\nbody\r\n", status: 422, code: "too_many_recipients"},
		{name: "20,000 query parameters", path: "/v1/messages/raw?" + strings.Repeat("to=a@contoso.com&", 20000), contentType: "message/rfc822",
			body: "From: alerts@alerts.contoso.com\r\nSubject: x\r\n\r\nbody\r\n", status: 400, code: "invalid_body"},
		{name: "header name with a colon", body: `{"to":"ops@contoso.com","text":"x","headers":{"X-A: 1\r\nBcc":"leak@gmail.com"}}`,
			status: 422, code: "validation_failed"},
		{name: "header name with a space", body: `{"to":"ops@contoso.com","text":"x","headers":{"X A":"1"}}`,
			status: 422, code: "validation_failed"},
		{name: "spam verdict header", body: `{"to":"ops@contoso.com","text":"x","headers":{"X-MS-Exchange-Organization-SCL":"-1"}}`,
			status: 422, code: "validation_failed"},
		{name: "CR LF in reply_to", body: `{"to":"ops@contoso.com","text":"x","reply_to":"a@contoso.com\r\nBcc: leak@gmail.com"}`,
			status: 422, code: "validation_failed"},
		{name: "CR in content_type", body: `{"to":"ops@contoso.com","text":"x","attachments":[{"filename":"a.txt","content_type":"text/plain\rX: y","content":"aGk="}]}`,
			status: 422, code: "validation_failed"},
		{name: "CR LF in a form field", contentType: "application/x-www-form-urlencoded", body: "to=ops%40contoso.com&text=x&subject=a%0D%0ABcc%3A+leak%40gmail.com",
			status: 422, code: "validation_failed", field: "subject"},
		{name: "unknown form field", contentType: "application/x-www-form-urlencoded", body: "to=ops%40contoso.com&text=x&bodyy=typo",
			status: 400, code: "invalid_body"},
		{name: "multipart without boundary", contentType: "multipart/form-data", body: "--x\r\n", status: 400, code: "invalid_body"},
		{name: "truncated multipart form", contentType: "multipart/form-data; boundary=b", body: "--b\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nops@contoso.com",
			status: 400, code: "invalid_body"},
		{name: "truncated JSON string", body: `{"to":"ops@contoso.com","text":"x`, status: 400, code: "invalid_body"},
		{name: "JSON number where a string belongs", body: `{"to":"ops@contoso.com","text":42}`, status: 400, code: "invalid_body"},
		{name: "truncated raw MIME", path: "/v1/messages/raw", contentType: "message/rfc822",
			body:   "From: alerts@alerts.contoso.com\r\nTo: ops@contoso.com\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nhalf",
			status: 400, code: "invalid_body"},
		{name: "deeply nested raw MIME", path: "/v1/messages/raw", contentType: "message/rfc822", body: nestedMIME(40),
			status: 400, code: "invalid_body"},
		{name: "raw with invalid base64 part", path: "/v1/messages/raw", contentType: "message/rfc822",
			body:   "From: alerts@alerts.contoso.com\r\nTo: ops@contoso.com\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n",
			status: 400, code: "invalid_body"},
		{name: "raw with a huge header line", path: "/v1/messages/raw", contentType: "message/rfc822",
			body:   "From: alerts@alerts.contoso.com\r\nTo: ops@contoso.com\r\nX-Long: " + strings.Repeat("a", 5000) + "\r\n\r\nbody\r\n",
			status: 400, code: "invalid_body"},
		{name: "raw with a Sender-less display-name spoof", path: "/v1/messages/raw", contentType: "message/rfc822",
			body:   "From: \"ceo@contoso.com\" <alerts@alerts.contoso.com>\r\nTo: ops@contoso.com\r\n\r\nbody\r\n",
			status: 422, code: "validation_failed"},
		{name: "raw with two From addresses", path: "/v1/messages/raw", contentType: "message/rfc822",
			body:   "From: alerts@alerts.contoso.com, ceo@contoso.com\r\nTo: ops@contoso.com\r\n\r\nbody\r\n",
			status: 422, code: "validation_failed"},
		{name: "one-liner with an unknown charset", path: "/v1/messages?to=ops@contoso.com", contentType: "text/plain; charset=x-unknown", body: "hi",
			status: 415, code: "unsupported_media_type"},
		{name: "non-UTF-8 one-liner", path: "/v1/messages?to=ops@contoso.com", contentType: "text/plain", body: "h\xe9llo",
			status: 400, code: "invalid_body"},
		{name: "Idempotency-Key too long", body: `{"to":"ops@contoso.com","text":"x"}`, header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)},
			status: 422, code: "validation_failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, ct, auth := tc.path, tc.contentType, tc.auth
			if path == "" {
				path = "/v1/messages"
			}
			if ct == "" {
				ct = "application/json"
			} else if ct == "-" {
				ct = ""
			}
			if auth == "" {
				auth = tok
			}
			r := e.do("POST", path, ct, auth, []byte(tc.body), tc.header)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			p := r.json(t)
			if p["code"] != tc.code {
				t.Fatalf("code %v, want %s: %s", p["code"], tc.code, r.body)
			}
			if tc.field != "" && !strings.Contains(string(r.body), `"field":"`+tc.field) {
				t.Fatalf("the problem does not name field %q: %s", tc.field, r.body)
			}
			e.assertNothingQueued()
		})
	}
	if len(cases) < 40 {
		t.Fatalf("only %d hostile requests; the table should hold at least 40", len(cases))
	}
	// None of them left a goroutine behind (handlers, readers, timers).
	http.DefaultClient.CloseIdleConnections()
	testwait.UntilNil(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > baseline+5 {
			return fmt.Errorf("%d goroutines after the hostile requests, %d before", n, baseline)
		}
		return nil
	})
}

// nestedMIME is a raw message whose multiparts nest depth deep.
func nestedMIME(depth int) string {
	var b strings.Builder
	b.WriteString("From: alerts@alerts.contoso.com\r\nTo: ops@contoso.com\r\nMIME-Version: 1.0\r\n")
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeep\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

func foreignToken(t *testing.T) string {
	m, err := token.New(token.Options{Key: []byte("another-key-another-key-another-key!!"), Issuer: "mailgate", Audience: config.DefaultAudience("mailgate", "mailgate")})
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := m.Issue("monitoring", token.ScopeApp, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func noneToken(t *testing.T) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
		"iss": "mailgate", "sub": "monitoring", "jti": "0123456789abcdef0123456789abcdef", "scope": "app",
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func expiredToken(t *testing.T) string {
	past := func() time.Time { return time.Now().Add(-2 * time.Hour) }
	m, err := token.New(token.Options{Key: []byte(signingKey), Issuer: "mailgate", Audience: config.DefaultAudience("mailgate", "mailgate"), Now: past})
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := m.Issue("monitoring", token.ScopeApp, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func adminToken(t *testing.T) string {
	m, err := token.New(token.Options{Key: []byte(signingKey), Issuer: "mailgate", Audience: config.DefaultAudience("mailgate", "mailgate")})
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := m.Issue("ops", token.ScopeAdmin, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A revoked token is refused at once by every instance, while the app's
// other tokens work. Both instances have served the token and hold the
// revocation list in memory when it is revoked, so nothing asks Redis:
// the refusal right after Revoke returns shows the revocation reached
// their memory before it did (internal/token counts the round trips).
func TestRevokedTokenIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var instances []string
	for range 2 {
		e.start(gateway.RoleAPI)
		instances = append(instances, e.base)
	}
	raw, c, err := e.tokens.Issue("monitoring", token.ScopeApp, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := e.token("monitoring")
	body := []byte(`{"to":"ops@contoso.com","text":"x"}`)
	for _, base := range instances {
		e.base = base
		e.waitRevocationsInMemory(true)
		if r := e.do("POST", "/v1/messages", "application/json", raw, body, nil); r.status != http.StatusAccepted {
			t.Fatalf("before revocation: %d %s", r.status, r.body)
		}
	}
	rc, err := token.NewRevocations(e.redis.Client(), "mailgate", nil).Revoke(context.Background(), c.ID, c.ExpiresAt.Time)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Listening != 2 || rc.Confirmed != 2 {
		t.Fatalf("revocation receipt %+v, want both instances confirming", rc)
	}
	for i, base := range instances {
		e.base = base
		r := e.do("POST", "/v1/messages", "application/json", raw, body, nil)
		if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "revoked") {
			t.Fatalf("instance %d, revoked token: %d %s", i, r.status, r.body)
		}
		if r := e.do("POST", "/v1/messages", "application/json", other, body, nil); r.status != http.StatusAccepted {
			t.Fatalf("instance %d, another token of the app: %d %s", i, r.status, r.body)
		}
	}
}

// An app cannot see another app's message: the answer is the same 404 as
// for an id that never existed.
func TestOtherAppsMessageIsNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	id := e.submitJSON(e.token("monitoring"), map[string]any{"to": "ops@contoso.com", "text": "x"}, nil)
	for _, path := range []string{"/v1/messages/" + id, "/v1/messages/06h06jjb92njteh1da0z8cppk0", "/v1/messages/not-an-id*"} {
		r := e.do("GET", path, "", e.token("billing"), nil, nil)
		if r.status != http.StatusNotFound || r.json(t)["code"] != "not_found" {
			t.Fatalf("GET %s as another app: %d %s", path, r.status, r.body)
		}
	}
	if r := e.do("GET", "/v1/messages/"+id, "", "-", nil, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("GET without token: %d", r.status)
	}
	if st := e.status(e.token("monitoring"), id); st["id"] != id {
		t.Fatalf("the owner cannot read its message: %v", st)
	}
}

// With Redis gone the API answers 503 and never 202 or 500; when Redis is
// back it accepts again without a restart.
func TestRedisDownGives503(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")
	body := []byte(`{"to":"ops@contoso.com","text":"x"}`)
	e.redis.Stop()
	r := e.do("POST", "/v1/messages", "application/json", tok, body, nil)
	if r.status != http.StatusServiceUnavailable || r.json(t)["code"] != "queue_unavailable" {
		t.Fatalf("with Redis down: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/readyz", "", "", nil, nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz with Redis down: %d", r.status)
	}
	if r := e.do("GET", "/healthz", "", "", nil, nil); r.status != http.StatusOK {
		t.Fatalf("healthz with Redis down: %d", r.status)
	}
	e.redis.Restart()
	testwait.UntilNil(t, 10*time.Second, func() error {
		r := e.do("POST", "/v1/messages", "application/json", tok, body, nil)
		switch r.status {
		case http.StatusAccepted:
			return nil
		case http.StatusServiceUnavailable:
			return fmt.Errorf("after Redis came back: still %d %s", r.status, r.body)
		}
		t.Fatalf("after Redis came back: %d %s", r.status, r.body)
		return nil
	})
}

// The operational endpoints answer, and the spec is served.
func TestOperationalEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	for path, want := range map[string]string{"/healthz": `"ok"`, "/readyz": `"ok"`, "/openapi.yaml": "openapi: 3.1", "/metrics": "go_goroutines"} {
		r := e.do("GET", path, "", "", nil, nil)
		if r.status != http.StatusOK || !strings.Contains(string(r.body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, r.status, want)
		}
	}
	r := e.do("GET", "/v1/routes", "", e.token("monitoring"), nil, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"name":"m365"`) || !strings.Contains(string(r.body), `"state":"ok"`) {
		t.Fatalf("routes: %d %s", r.status, r.body)
	}
}

// An app over its API rate limit gets 429 rate_limited with Retry-After, and
// the refused request queues nothing; another app is not affected.
func TestRateLimitedApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Apps[0].RateLimit.PerMinute = 2 })
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")
	body := []byte(`{"to":"ops@contoso.com","text":"x"}`)
	for i := 0; i < 2; i++ {
		if r := e.do("POST", "/v1/messages", "application/json", tok, body, nil); r.status != http.StatusAccepted {
			t.Fatalf("request %d within the limit: %d %s", i+1, r.status, r.body)
		}
	}
	r := e.do("POST", "/v1/messages", "application/json", tok, body, nil)
	if r.status != http.StatusTooManyRequests || r.json(t)["code"] != "rate_limited" {
		t.Fatalf("third request: %d %s", r.status, r.body)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q, want whole seconds in [1, 60]", r.header.Get("Retry-After"))
	}
	if n := e.redis.Client().ZCard(context.Background(), "mailgate:{m365}:ready").Val(); n != 2 {
		t.Fatalf("%d messages queued, want the 2 within the limit", n)
	}
	if r := e.do("POST", "/v1/messages", "application/json", e.token("billing"), body, nil); r.status != http.StatusAccepted {
		t.Fatalf("another app was limited too: %d", r.status)
	}
}
