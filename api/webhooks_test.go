package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
)

// The vectors are HMAC-SHA256 computed outside Go (Python's hmac module),
// the way Grafana's webhook notifier signs (grafana/alerting http/hmac.go):
// hex over the body, or over "timestamp:body".
func TestVerifyGrafana(t *testing.T) {
	t.Parallel()
	body := []byte(`{"status":"firing"}`)
	now := time.Unix(1764595200, 0)
	plain := &config.AppWebhooks{GrafanaSecret: "secret", GrafanaSignatureHeader: "X-Grafana-Alerting-Signature"}
	stamped := &config.AppWebhooks{GrafanaSecret: "secret", GrafanaSignatureHeader: "X-Grafana-Alerting-Signature",
		GrafanaTimestampHeader: "X-Grafana-Alerting-Timestamp"}
	const (
		sigPlain   = "99da718745e068940da5a11a17187cb45656f78cd34132618eebc3ab7f7860e1"
		sigStamped = "43dd2ee6e7c9401a6cf833a0a644ac24f527df812c3dc0739a5bf2e491a7dbff"
	)
	for _, tc := range []struct {
		name string
		conf *config.AppWebhooks
		h    map[string]string
		now  time.Time
		ok   bool
	}{
		{"plain", plain, map[string]string{"X-Grafana-Alerting-Signature": sigPlain}, now, true},
		{"upper-case hex", plain, map[string]string{"X-Grafana-Alerting-Signature": "99DA718745E068940DA5A11A17187CB45656F78CD34132618EEBC3AB7F7860E1"}, now, true},
		{"missing", plain, nil, now, false},
		{"wrong", plain, map[string]string{"X-Grafana-Alerting-Signature": sigStamped}, now, false},
		{"stamped", stamped, map[string]string{"X-Grafana-Alerting-Signature": sigStamped, "X-Grafana-Alerting-Timestamp": "1764595200"}, now.Add(time.Minute), true},
		{"stamped without timestamp", stamped, map[string]string{"X-Grafana-Alerting-Signature": sigPlain}, now, false},
		{"stale", stamped, map[string]string{"X-Grafana-Alerting-Signature": sigStamped, "X-Grafana-Alerting-Timestamp": "1764595200"}, now.Add(time.Hour), false},
	} {
		h := http.Header{}
		for k, v := range tc.h {
			h.Set(k, v)
		}
		err := verifyGrafana(h, body, tc.conf, tc.now)
		if (err == nil) != tc.ok {
			t.Errorf("%s: got %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil {
			if p, _ := err.(*Problem); p == nil || p.Status != http.StatusUnauthorized {
				t.Errorf("%s: %v is not a 401", tc.name, err)
			}
		}
	}
}
