package e2e

import (
	"bytes"
	"encoding/base64"
	"mime/multipart"
	"net/http"
	"testing"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
)

// A page on another site can make a browser POST a form or text body, with
// the Basic credentials the browser holds for mailgate, without asking
// first. Such requests are refused when their Origin is not allowed;
// allowed origins, JSON bodies (which a browser must ask CORS for) and
// clients that send no Origin are not affected.
func TestCrossSiteBrowserRequestsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.AllowedOrigins = []string{"https://intranet.contoso.com"} })
	e.start(gateway.RoleAPI)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+e.token("monitoring")))
	admin := "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+e.adminToken()))

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	for _, f := range [][2]string{{"to", "ops@contoso.com"}, {"text", "hi"}} {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}

	const evil = "https://evil.example"
	refused := []struct {
		name, method, path, contentType, auth string
		body                                  []byte
	}{
		{"text/plain one-liner", "POST", "/v1/messages?to=ops@contoso.com", "text/plain", basic, []byte("hello")},
		{"text/plain with charset", "POST", "/v1/messages?to=ops@contoso.com", "text/plain; charset=utf-8", basic, []byte("hello")},
		{"urlencoded form", "POST", "/v1/messages", "application/x-www-form-urlencoded", basic, []byte("to=ops%40contoso.com&text=hi")},
		{"multipart form", "POST", "/v1/messages", mw.FormDataContentType(), basic, form.Bytes()},
		{"no content type", "POST", "/v1/messages?to=ops@contoso.com", "", basic, []byte("hello")},
		{"bearer token too", "POST", "/v1/messages?to=ops@contoso.com", "text/plain", e.token("monitoring"), []byte("hello")},
		{"admin requeue", "POST", "/v1/admin/routes/m365/failed/requeue", "text/plain", admin, nil},
	}
	for _, tc := range refused {
		for _, origin := range []string{evil, "null", "https://intranet.contoso.com.evil.example"} {
			r := e.do(tc.method, tc.path, tc.contentType, tc.auth, tc.body, map[string]string{"Origin": origin})
			if r.status != http.StatusForbidden || r.json(t)["code"] != "origin_not_allowed" {
				t.Errorf("%s from %s: %d %s", tc.name, origin, r.status, r.body)
			}
		}
	}
	e.assertNothingQueued()

	for name, header := range map[string]map[string]string{
		"allowed origin":             {"Origin": "https://intranet.contoso.com"},
		"allowed origin, other case": {"Origin": "https://Intranet.Contoso.com"},
		"no origin (not a browser)":  nil,
	} {
		r := e.do("POST", "/v1/messages?to=ops@contoso.com", "text/plain", basic, []byte("hello"), header)
		if r.status != http.StatusAccepted {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	// JSON cannot be sent cross-site without a preflight mailgate never
	// grants, so it is not what this check is about.
	r := e.do("POST", "/v1/messages", "application/json", basic, []byte(`{"to":"ops@contoso.com","text":"x"}`), map[string]string{"Origin": evil})
	if r.status != http.StatusAccepted {
		t.Errorf("JSON with an Origin: %d %s", r.status, r.body)
	}
}
