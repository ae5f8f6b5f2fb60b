package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mailgate/mailgate/internal/config"
)

// shippedTemplates reads the templates under deploy/templates, as a user
// copies them into the configuration.
func shippedTemplates(t *testing.T) []config.Template {
	t.Helper()
	files, err := filepath.Glob("../../deploy/templates/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped templates: %v", err)
	}
	var out []config.Template
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Templates []config.Template `yaml:"templates"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, doc.Templates...)
	}
	return out
}

func templatesEnv(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	return newEnv(t, func(c *config.Config) {
		webhookApp(c)
		c.Templates = shippedTemplates(t)
		if mutate != nil {
			mutate(c)
		}
	})
}

// post sends a JSON webhook body and returns the answer.
func (e *env) postWebhook(path, tok string, body []byte, header map[string]string) response {
	e.t.Helper()
	return e.do("POST", path, "application/json", tok, body, header)
}

func accepted(t *testing.T, r response) string {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("want 202, got %d %s", r.status, r.body)
	}
	id, _ := r.json(t)["id"].(string)
	return id
}

func TestShippedTemplates(t *testing.T) {
	t.Parallel()
	e := templatesEnv(t, nil)
	e.start("all")
	tok := e.token("monitoring")

	for _, tc := range []struct {
		name, path, body string
		header           map[string]string
		subject          string
		text             []string
	}{
		{name: "uptime kuma down", path: "/v1/webhooks/uptime-kuma", body: `{
			"heartbeat": {"monitorID": 3, "status": 0, "time": "2026-12-01 13:20:00.123", "msg": "connect ECONNREFUSED 10.0.0.5:443",
				"important": true, "duration": 60, "ping": null, "timezone": "Europe/Berlin", "timezoneOffset": "+01:00",
				"localDateTime": "2026-12-01 14:20:00"},
			"monitor": {"id": 3, "name": "Website", "description": null, "url": "https://www.contoso.com", "type": "http",
				"interval": 60, "hostname": null, "port": null, "active": true, "tags": []},
			"msg": "[Website] [🔴 Down] connect ECONNREFUSED 10.0.0.5:443"}`,
			subject: "[DOWN] Website",
			text:    []string{"[Website] [🔴 Down] connect ECONNREFUSED 10.0.0.5:443", "URL:     https://www.contoso.com", "Time:    2026-12-01 14:20:00 Europe/Berlin"}},
		{name: "uptime kuma test", path: "/v1/webhooks/uptime-kuma",
			body:    `{"heartbeat": null, "monitor": null, "msg": "Uptime Kuma Webhook Testing"}`,
			subject: "Uptime Kuma test notification", text: []string{"Uptime Kuma Webhook Testing"}},
		// The body deploy/templates/healthchecks.yaml tells to configure:
		// {"status": "$STATUS", "now": "$NOW", "check": $JSON}, filled as
		// Healthchecks.io does (hc/integrations/webhook/transport.py).
		{name: "healthchecks", path: "/v1/webhooks/healthchecks", body: `{"status": "down", "now": "2026-12-01T13:20:00+00:00",
			"check": {"name": "nightly \"backup\"", "slug": "nightly-backup", "tags": "prod backup", "desc": "Runs at 02:00",
				"grace": 3600, "n_pings": 412, "status": "down", "started": false, "last_ping": "2026-11-30T02:00:41+00:00",
				"next_ping": null, "manual_resume": false, "methods": "", "uuid": "5d8b4c2a-0c3e-4c39-9a8e-0123456789ab",
				"ping_url": "https://hc-ping.com/5d8b4c2a-0c3e-4c39-9a8e-0123456789ab"}}`,
			subject: `[DOWN] nightly "backup"`,
			text: []string{`The check "nightly "backup"" is down: it did not ping in time.`, "Runs at 02:00", "Time: 2026-12-01 13:20:00 UTC",
				"Last ping: 2026-11-30 02:00:41 UTC", "Details: https://healthchecks.io/checks/5d8b4c2a-0c3e-4c39-9a8e-0123456789ab/details/"}},
		// The body and headers deploy/zabbix/mailgate.yaml's script sends.
		{name: "zabbix", path: "/v1/webhooks/zabbix?to=ops%40contoso.com", body: `{"subject": "Problem: High CPU utilization",
			"message": "Problem started at 13:20:00 on 2026.12.01\nProblem name: High CPU utilization\nHost: db-1\nSeverity: High\nOriginal problem ID: 4711\n",
			"event_id": "4711", "event_value": "1", "severity": "High", "host": "db-1",
			"event_url": "https://zabbix.contoso.com/tr_events.php?triggerid=13&eventid=4711"}`,
			header:  map[string]string{"Idempotency-Key": "zabbix-4711-1-ops@contoso.com-{EVENT.UPDATE.DATE} {EVENT.UPDATE.TIME}"},
			subject: "Problem: High CPU utilization",
			text:    []string{"Problem name: High CPU utilization", "Host:     db-1", "Open in Zabbix: https://zabbix.contoso.com/tr_events.php?triggerid=13&eventid=4711"}},
	} {
		id := accepted(t, e.postWebhook(tc.path, tok, []byte(tc.body), tc.header))
		if tc.header != nil {
			// Zabbix retries a failed call with the same key: queued once.
			if again := accepted(t, e.postWebhook(tc.path, tok, []byte(tc.body), tc.header)); again != id {
				t.Errorf("%s: the retry was queued as %s, the first as %s", tc.name, again, id)
			}
		}
		st := e.waitStatus(tok, id, "sent", 20*time.Second)
		m := findByMessageID(t, e.sim, st["message_id"].(string))
		p := parseDelivered(t, m.Data)
		if got := p.header.Get("Subject"); got != tc.subject {
			t.Errorf("%s: subject %q, want %q", tc.name, got, tc.subject)
		}
		for _, want := range tc.text {
			if !strings.Contains(p.text, want) {
				t.Errorf("%s: text lacks %q:\n%s", tc.name, want, p.text)
			}
		}
		if p.html == "" || strings.Contains(p.text+p.html, "<no value>") {
			t.Errorf("%s: html part %q, text %q", tc.name, p.html, p.text)
		}
	}
	if n := len(e.sim.Messages()); n != 4 {
		t.Errorf("%d messages delivered, want 4", n)
	}
}

func TestTemplateOnMessagesAndRenderFailure(t *testing.T) {
	t.Parallel()
	e := templatesEnv(t, nil)
	e.start("all")
	tok := e.token("monitoring")

	// A template that fails for this data: 422 with its error, nothing queued.
	r := e.do("POST", "/v1/messages", "application/json", tok,
		[]byte(`{"to": "ops@contoso.com", "template": "healthchecks", "data": {"status": "down", "check": {}}}`), nil)
	if r.status != http.StatusUnprocessableEntity || r.json(t)["code"] != "template_failed" ||
		!strings.Contains(string(r.body), "check.name is required") {
		t.Fatalf("render failure: %d %s", r.status, r.body)
	}
	r = e.postWebhook("/v1/webhooks/healthchecks", tok, []byte(`{"status": "up"}`), nil)
	if r.status != http.StatusUnprocessableEntity || r.json(t)["code"] != "template_failed" {
		t.Fatalf("render failure on the webhook: %d %s", r.status, r.body)
	}
	for _, body := range []string{
		`{"to": "ops@contoso.com", "template": "nope", "data": {}}`,
		`{"to": "ops@contoso.com", "template": "healthchecks", "subject": "x", "data": {}}`,
		`{"to": "ops@contoso.com", "text": "x", "data": {"a": 1}}`,
	} {
		if r := e.do("POST", "/v1/messages", "application/json", tok, []byte(body), nil); r.status != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d %s", body, r.status, r.body)
		}
	}
	if r := e.postWebhook("/v1/webhooks/nope", tok, []byte(`{}`), nil); r.status != http.StatusNotFound {
		t.Errorf("unknown template: %d %s", r.status, r.body)
	}
	if r := e.postWebhook("/v1/webhooks/healthchecks", tok, []byte(`{"name": `), nil); r.status != http.StatusBadRequest {
		t.Errorf("broken JSON: %d %s", r.status, r.body)
	}
	e.assertNothingQueued()

	id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "template": "healthchecks",
		"data": map[string]any{"check": map[string]any{"name": "db <backup>"}, "status": "up", "now": "2026-12-01T13:20:00Z"}}, nil)
	st := e.waitStatus(tok, id, "sent", 20*time.Second)
	p := parseDelivered(t, findByMessageID(t, e.sim, st["message_id"].(string)).Data)
	if p.header.Get("Subject") != "[UP] db <backup>" || !strings.Contains(p.html, "db &lt;backup&gt;") {
		t.Errorf("subject %q html %s", p.header.Get("Subject"), p.html)
	}
}

// grafanaBody is a notification as Grafana's webhook contact point sends it
// (grafana/alerting receivers/webhook: the Alertmanager data plus title,
// state, message and orgId, and per alert the Grafana URLs and values).
const grafanaBody = `{
  "receiver": "mailgate", "status": "firing", "orgId": 1,
  "alerts": [{
    "status": "firing",
    "labels": {"alertname": "DiskFull", "grafana_folder": "Infra", "instance": "db-1"},
    "annotations": {"summary": "Disk / is 97% full"},
    "startsAt": "2026-12-01T13:10:00Z", "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "https://grafana.contoso.com/alerting/grafana/aaa111/view?orgId=1",
    "fingerprint": "57c6d9296de2ad39",
    "silenceURL": "https://grafana.contoso.com/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DDiskFull&orgId=1",
    "dashboardURL": "https://grafana.contoso.com/d/abcd?orgId=1",
    "panelURL": "https://grafana.contoso.com/d/abcd?orgId=1&viewPanel=2",
    "values": {"A": 97.2}, "valueString": "[ var='A' labels={instance=db-1} value=97.2 ]"
  }],
  "groupLabels": {"alertname": "DiskFull", "grafana_folder": "Infra"},
  "commonLabels": {"alertname": "DiskFull", "grafana_folder": "Infra", "instance": "db-1"},
  "commonAnnotations": {"summary": "Disk / is 97% full"},
  "externalURL": "https://grafana.contoso.com/",
  "version": "1",
  "groupKey": "{}/{__grafana_autogenerated__=\"true\"}/{__grafana_receiver__=\"mailgate\"}:{alertname=\"DiskFull\", grafana_folder=\"Infra\"}",
  "truncatedAlerts": 0,
  "title": "[FIRING:1] DiskFull Infra (db-1)",
  "state": "alerting",
  "message": "**Firing**\n\nValue: A=97.2\nLabels:\n - alertname = DiskFull\n"
}`

func sign(secret, prefix, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(prefix + body))
	return hex.EncodeToString(m.Sum(nil))
}

func TestGrafanaSignature(t *testing.T) {
	t.Parallel()
	const secret = "grafana-hmac-secret"
	e := newEnv(t, func(c *config.Config) {
		webhookApp(c)
		c.Apps[0].Webhooks.GrafanaSecret = secret
		c.Apps[1].Webhooks.GrafanaSecret = secret
		c.Apps[1].Webhooks.GrafanaTimestampHeader = "X-Grafana-Alerting-Timestamp"
		c.Apps[1].Webhooks.To = []string{"ops@contoso.com"}
	})
	e.start("all")
	tok := e.token("monitoring")
	for name, h := range map[string]map[string]string{
		"unsigned":       nil,
		"wrong secret":   {"X-Grafana-Alerting-Signature": sign("other", "", grafanaBody)},
		"other body":     {"X-Grafana-Alerting-Signature": sign(secret, "", grafanaBody+" ")},
		"not hex":        {"X-Grafana-Alerting-Signature": "zz"},
		"wrong header":   {"X-Signature": sign(secret, "", grafanaBody)},
		"timestamp kept": {"X-Grafana-Alerting-Signature": sign(secret, "1700000000:", grafanaBody)},
	} {
		if r := e.postWebhook("/v1/webhooks/grafana", tok, []byte(grafanaBody), h); r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	// The app with a signed timestamp: a stale one is refused.
	tok2 := e.token("billing")
	old := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	if r := e.postWebhook("/v1/webhooks/grafana", tok2, []byte(grafanaBody), map[string]string{
		"X-Grafana-Alerting-Signature": sign(secret, old+":", grafanaBody), "X-Grafana-Alerting-Timestamp": old,
	}); r.status != http.StatusUnauthorized {
		t.Errorf("stale timestamp: %d %s", r.status, r.body)
	}
	e.assertNothingQueued()

	id := accepted(t, e.postWebhook("/v1/webhooks/grafana", tok, []byte(grafanaBody),
		map[string]string{"X-Grafana-Alerting-Signature": sign(secret, "", grafanaBody)}))
	st := e.waitStatus(tok, id, "sent", 20*time.Second)
	p := parseDelivered(t, findByMessageID(t, e.sim, st["message_id"].(string)).Data)
	if got := p.header.Get("Subject"); got != "[FIRING:1] DiskFull Infra (db-1)" {
		t.Errorf("subject %q", got)
	}
	for _, want := range []string{"Disk / is 97% full", "Dashboard: https://grafana.contoso.com/d/abcd?orgId=1",
		"Silence:   https://grafana.contoso.com/alerting/silence/new?", "Value: [ var='A'"} {
		if !strings.Contains(p.text, want) {
			t.Errorf("text lacks %q:\n%s", want, p.text)
		}
	}

	now := strconv.FormatInt(time.Now().Unix(), 10)
	accepted(t, e.postWebhook("/v1/webhooks/grafana", tok2, []byte(grafanaBody), map[string]string{
		"X-Grafana-Alerting-Signature": sign(secret, now+":", grafanaBody), "X-Grafana-Alerting-Timestamp": now,
	}))
}

// alertBody is an Alertmanager notification with the given group label
// value and recipient label.
func alertBody(t *testing.T, alertname, emailTo, description string) []byte {
	t.Helper()
	labels := map[string]string{"alertname": alertname, "severity": "page"}
	if emailTo != "" {
		labels["email_to"] = emailTo
	}
	b, err := json.Marshal(map[string]any{
		"version": "4", "groupKey": `{}:{alertname="` + alertname + `"}`, "truncatedAlerts": 0,
		"status": "firing", "receiver": "mailgate",
		"groupLabels": map[string]string{"alertname": alertname}, "commonLabels": labels,
		"commonAnnotations": map[string]string{}, "externalURL": "http://am.contoso.com:9093",
		"alerts": []map[string]any{{"status": "firing", "labels": labels,
			"annotations": map[string]string{"summary": "s", "description": description},
			"startsAt":    "2026-12-01T13:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
			"generatorURL": "http://prometheus.contoso.com/graph", "fingerprint": "0123456789abcdef"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAlertmanagerRetryIsQueuedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webhookApp)
	e.start("all")
	tok := e.token("monitoring")
	body := alertBody(t, "HighLatency", "", "d")
	first := accepted(t, e.postWebhook("/v1/webhooks/alertmanager", tok, body, nil))
	// Alertmanager retries when the first answer was lost.
	if again := accepted(t, e.postWebhook("/v1/webhooks/alertmanager", tok, body, nil)); again != first {
		t.Errorf("the retry was queued again: %s, first %s", again, first)
	}
	other := accepted(t, e.postWebhook("/v1/webhooks/alertmanager", tok, alertBody(t, "Other", "", "d"), nil))
	if other == first {
		t.Error("another notification was taken for a retry")
	}
	e.waitStatus(tok, first, "sent", 20*time.Second)
	e.waitStatus(tok, other, "sent", 20*time.Second)
	if n := len(e.sim.Messages()); n != 2 {
		t.Errorf("%d mails, want 2", n)
	}
}

func TestAlertHostileLabelsAndLabelRecipients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		webhookApp(c)
		c.Apps[0].Webhooks.RecipientsLabel = "email_to"
	})
	e.start("all")
	tok := e.token("monitoring")

	// A line break in a label that the subject shows: folded, never a header.
	id := accepted(t, e.postWebhook("/v1/webhooks/alertmanager", tok,
		alertBody(t, "Evil\r\nBcc: victim@example.com", "", "<script>alert(1)</script>"), nil))
	st := e.waitStatus(tok, id, "sent", 20*time.Second)
	m := findByMessageID(t, e.sim, st["message_id"].(string))
	p := parseDelivered(t, m.Data)
	if got := p.header.Get("Subject"); got != "[FIRING:1] Evil Bcc: victim@example.com (page)" {
		t.Errorf("subject %q", got)
	}
	for _, name := range rawHeaderNames(m.Data) {
		if name == "bcc" {
			t.Error("a label became a Bcc header")
		}
	}
	if strings.Join(m.Rcpt, ",") != "oncall@contoso.com" {
		t.Errorf("recipients %v", m.Rcpt)
	}
	if strings.Contains(p.html, "<script>") || !strings.Contains(p.html, "&lt;script&gt;") {
		t.Errorf("HTML not escaped:\n%s", p.html)
	}

	// A recipient from the label, within the app's policy.
	id = accepted(t, e.postWebhook("/v1/webhooks/alertmanager", tok, alertBody(t, "Team", "team@contoso.com", "d"), nil))
	st = e.waitStatus(tok, id, "sent", 20*time.Second)
	m = findByMessageID(t, e.sim, st["message_id"].(string))
	if strings.Join(m.Rcpt, ",") != "oncall@contoso.com,team@contoso.com" {
		t.Errorf("recipients %v", m.Rcpt)
	}
	// Outside the policy: refused, as any recipient would be.
	r := e.postWebhook("/v1/webhooks/alertmanager", tok, alertBody(t, "Leak", "someone@elsewhere.org", "d"), nil)
	if r.status != http.StatusForbidden || r.json(t)["code"] != "recipient_not_allowed" {
		t.Errorf("label recipient outside the policy: %d %s", r.status, r.body)
	}
	// ?to= replaces webhooks.to.
	id = accepted(t, e.postWebhook("/v1/webhooks/alertmanager?to=noc%40contoso.com", tok, alertBody(t, "Query", "", "d"), nil))
	st = e.waitStatus(tok, id, "sent", 20*time.Second)
	if m := findByMessageID(t, e.sim, st["message_id"].(string)); strings.Join(m.Rcpt, ",") != "noc@contoso.com" {
		t.Errorf("recipients %v", m.Rcpt)
	}
	// Not a notification: a permanent 400 Alertmanager will not retry.
	if r := e.postWebhook("/v1/webhooks/alertmanager", tok, []byte(`{"status":"firing","alerts":[]}`), nil); r.status != http.StatusBadRequest {
		t.Errorf("empty alerts: %d %s", r.status, r.body)
	}
}

// What Alertmanager retries: only 5xx answers, so both over the app's rate
// limit and with Redis away its door answers 503; both queue nothing.
func TestAlertWebhookTransientAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		webhookApp(c)
		c.Apps[0].RateLimit.PerMinute = 1
	})
	e.start("api")
	tok := e.token("monitoring")
	accepted(t, e.postWebhook("/v1/webhooks/alertmanager", tok, alertBody(t, "One", "", "d"), nil))
	r := e.postWebhook("/v1/webhooks/alertmanager", tok, alertBody(t, "Two", "", "d"), nil)
	if r.status != http.StatusServiceUnavailable || r.json(t)["code"] != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the rate limit: %d %s", r.status, r.body)
	}
	// The template door answers as POST /v1/messages does.
	if r := e.postWebhook("/v1/webhooks/grafana", tok, []byte(grafanaBody), nil); r.status != http.StatusTooManyRequests {
		t.Fatalf("grafana over the rate limit: %d %s", r.status, r.body)
	}
	e.redis.Stop()
	r = e.postWebhook("/v1/webhooks/alertmanager", tok, alertBody(t, "Three", "", "d"), nil)
	if r.status != http.StatusServiceUnavailable || r.json(t)["code"] != "queue_unavailable" {
		t.Fatalf("with Redis down: %d %s", r.status, r.body)
	}
}
