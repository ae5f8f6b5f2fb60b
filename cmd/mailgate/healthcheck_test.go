package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// `mailgate healthcheck` is what the container's health check runs: exit 0
// only on a 2xx, 1 on any other answer or none, 2 on a usage error.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--url", srv.URL + "/readyz"}, 0, "ok"},
		{[]string{"--url", srv.URL + "/draining"}, 1, "503 Service Unavailable"},
		{[]string{"--url", "http://127.0.0.1:1/readyz", "--timeout", "2s"}, 1, "healthcheck:"},
		{[]string{"--url", "::nonsense"}, 2, "--url"},
		{[]string{"extra"}, 2, "no arguments"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(append([]string{"healthcheck"}, tt.args...), &out, &errOut, env(nil))
		if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.out) {
			t.Errorf("healthcheck %v: exit %d, stdout %q, stderr %q; want exit %d mentioning %q",
				tt.args, code, out.String(), errOut.String(), tt.code, tt.out)
		}
	}
}
