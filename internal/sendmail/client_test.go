package sendmail

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func TestResultExit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status    int
		code      int
		temporary bool
	}{
		{0, ExitTempFail, true}, // no answer: network error
		{202, ExitOK, false},
		{400, ExitDataErr, false},
		{413, ExitDataErr, false},
		{415, ExitDataErr, false},
		{422, ExitDataErr, false},
		{401, ExitNoPerm, false},
		{403, ExitNoPerm, false},
		{429, ExitTempFail, true},
		{500, ExitTempFail, true},
		{502, ExitTempFail, true},
		{503, ExitTempFail, true},
		{404, ExitTempFail, true}, // a wrong url: fixable, keep the message
	}
	for _, tt := range tests {
		code, temp := Result{Status: tt.status}.Exit()
		if code != tt.code || temp != tt.temporary {
			t.Errorf("status %d: exit %d temporary %v, want %d %v", tt.status, code, temp, tt.code, tt.temporary)
		}
	}
}

func TestSubmitRequestAndReason(t *testing.T) {
	t.Parallel()
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, body = r, nil
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		if _, err := io.WriteString(w, `{"type":"about:blank","title":"From address not allowed","status":403,`+
			`"code":"from_not_allowed","detail":"app cron may send as\nalerts@contoso.com",`+
			`"errors":[{"field":"from","message":"x@y.z is not within the app's From policy"}]}`); err != nil {
			t.Error(err)
		}
	}))
	t.Cleanup(srv.Close)
	c := &Client{URL: srv.URL + "/", Token: "tok", HTTP: srv.Client(), UserAgent: "mailgate-sendmail/test"}
	res := c.Submit(context.Background(), "key-1", []string{"a@contoso.com", "b@contoso.com"}, []byte("Subject: x\r\n\r\n"))
	if got.URL.Path != "/v1/messages/raw" || !reflect.DeepEqual(got.URL.Query()["to"], []string{"a@contoso.com", "b@contoso.com"}) {
		t.Errorf("request %s", got.URL)
	}
	if got.Header.Get("Authorization") != "Bearer tok" || got.Header.Get("Idempotency-Key") != "key-1" ||
		got.Header.Get("Content-Type") != "message/rfc822" || string(body) != "Subject: x\r\n\r\n" {
		t.Errorf("headers %v, body %q", got.Header, body)
	}
	want := "mailgate answered 403 Forbidden (from_not_allowed): app cron may send as alerts@contoso.com; from: x@y.z is not within the app's From policy"
	if res.Status != 403 || res.Reason != want {
		t.Errorf("result %+v\nwant reason %q", res, want)
	}

	srv.Close()
	res = c.Submit(context.Background(), "key-2", nil, nil)
	if res.Status != 0 || !strings.HasPrefix(res.Reason, "mailgate not reachable: ") || strings.Contains(res.Reason, "\n") {
		t.Errorf("closed server: %+v", res)
	}
}
