package e2e

import (
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/gateway"
)

// Raw MIME obeys the header rules of the JSON path: every header that names
// a sender is within the app's From policy, and a display name that decodes
// to something looking like an address is refused, on both paths.
func TestSenderHeadersFollowThePolicy(t *testing.T) {
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")
	const rawPath, rfc822 = "/v1/messages/raw", "message/rfc822"
	raw := func(head string) string {
		return "From: alerts@alerts.contoso.com\r\nTo: ops@contoso.com\r\n" + head + "Subject: x\r\n\r\nbody\r\n"
	}
	cases := []refusal{
		{name: "raw Sender outside the policy", path: rawPath, contentType: rfc822,
			body: raw("Sender: ceo@other.example\r\n"), status: 403, code: "from_not_allowed", field: "headers.Sender"},
		{name: "raw Resent-From outside the policy", path: rawPath, contentType: rfc822,
			body: raw("Resent-From: ceo@other.example\r\n"), status: 403, code: "from_not_allowed", field: "headers.Resent-From"},
		{name: "raw Resent-Sender outside the policy", path: rawPath, contentType: rfc822,
			body: raw("Resent-Sender: ceo@other.example\r\n"), status: 403, code: "from_not_allowed", field: "headers.Resent-Sender"},
		{name: "raw Sender faking a name", path: rawPath, contentType: rfc822,
			body: raw("Sender: \"ceo@contoso.com\" <alerts@alerts.contoso.com>\r\n"), status: 422, code: "validation_failed", field: "headers.Sender"},
		{name: "raw two Sender fields", path: rawPath, contentType: rfc822,
			body: raw("Sender: a@alerts.contoso.com\r\nSender: b@alerts.contoso.com\r\n"), status: 422, code: "validation_failed", field: "headers.Sender"},
		{name: "raw spam verdict header", path: rawPath, contentType: rfc822,
			body: raw("X-MS-Exchange-Organization-SCL: -1\r\n"), status: 422, code: "validation_failed"},
		{name: "raw From with a UTF-7 encoded address as name", path: rawPath, contentType: rfc822,
			body:   "From: =?utf-7?q?ceo+AEA-contoso.com?= <alerts@alerts.contoso.com>\r\nTo: ops@contoso.com\r\n\r\nbody\r\n",
			status: 422, code: "validation_failed", field: "headers.From"},
		{name: "raw From with a Latin-1 encoded address as name", path: rawPath, contentType: rfc822,
			body:   "From: =?iso-8859-1?q?ceo=40contoso.com?= <alerts@alerts.contoso.com>\r\nTo: ops@contoso.com\r\n\r\nbody\r\n",
			status: 422, code: "validation_failed", field: "headers.From"},
		{name: "raw From with a full-width at sign", path: rawPath, contentType: rfc822,
			body:   "From: =?utf-8?b?" + "Y2Vv77ygY29udG9zby5jb20=" + "?= <alerts@alerts.contoso.com>\r\nTo: ops@contoso.com\r\n\r\nbody\r\n",
			status: 422, code: "validation_failed", field: "headers.From"},
		{name: "raw From with a small at sign in UTF-8", path: rawPath, contentType: rfc822,
			body:   "From: ceo\uFE6Bcontoso.com <alerts@alerts.contoso.com>\r\nTo: ops@contoso.com\r\n\r\nbody\r\n",
			status: 422, code: "validation_failed", field: "headers.From"},
		{name: "JSON from with a UTF-7 encoded address as name", body: `{"from":"=?utf-7?q?ceo+AEA-contoso.com?= <alerts@alerts.contoso.com>","to":"ops@contoso.com","text":"x"}`,
			status: 422, code: "validation_failed", field: "from"},
		{name: "JSON from with a full-width at sign", body: `{"from":"ceo\uff20contoso.com <alerts@alerts.contoso.com>","to":"ops@contoso.com","text":"x"}`,
			status: 422, code: "validation_failed", field: "from"},
		{name: "JSON Sender header", body: `{"to":"ops@contoso.com","text":"x","headers":{"Sender":"ceo@other.example"}}`,
			status: 422, code: "validation_failed", field: "headers.Sender"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, ct := tc.path, tc.contentType
			if path == "" {
				path = "/v1/messages"
			}
			if ct == "" {
				ct = "application/json"
			}
			r := e.do("POST", path, ct, tok, []byte(tc.body), nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
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

	// Within the policy, the same headers are accepted; trace fields only a
	// server may set are removed rather than refused (see compose).
	ok := raw("Sender: noc@alerts.contoso.com\r\nResent-From: Alerts <alerts@alerts.contoso.com>\r\n" +
		"Return-Path: <bounce@elsewhere.example>\r\nReceived: from cron by host; Tue, 1 Dec 2026 10:00:00 +0000\r\n" +
		"DKIM-Signature: v=1; a=rsa-sha256; d=elsewhere.example; s=x; b=AAAA\r\n")
	if r := e.do("POST", rawPath, rfc822, tok, []byte(ok), nil); r.status != 202 {
		t.Fatalf("a raw message with its Sender within the policy: status %d: %s", r.status, r.body)
	}
}
