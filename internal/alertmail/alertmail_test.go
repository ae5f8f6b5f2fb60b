package alertmail

import (
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/templates"
)

type testBundle struct {
	set *templates.Set
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	now := func() time.Time { return time.Date(2026, 12, 1, 13, 20, 0, 0, time.UTC) }
	set, err := templates.NewSet(Builtin(), nil, now)
	if err != nil {
		t.Fatal(err)
	}
	return &testBundle{set: set}
}

func load(t *testing.T, source string) *Notification {
	t.Helper()
	body, err := os.ReadFile("testdata/" + source + ".json")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Parse(source, body)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAlertmanagerMail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	n := load(t, SourceAlertmanager)
	r, err := b.set.Get(SourceAlertmanager).Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[FIRING:2] HighLatency (api page)"; r.Subject != want {
		t.Errorf("subject %q, want %q", r.Subject, want)
	}
	for _, want := range []string{
		"2 firing, 1 resolved", "2 more alerts were left out",
		"FIRING: HighLatency", "RESOLVED: HighLatency", "p99 latency above 2s",
		"Started: 2026-12-01 13:00:00 UTC (20m ago)", "Ended:   2026-12-01 12:30:00 UTC",
		"instance = api-1:9090", "runbook_url: https://runbooks.example.com/latency",
		"Source:    http://prometheus.example.com/graph?g0.expr=latency%3E2",
		"Silence:   http://alertmanager.example.com:9093/#/silences/new?filter=",
	} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, r.Text)
		}
	}
	// Firing alerts come before resolved ones.
	if strings.Index(r.Text, "RESOLVED: HighLatency") < strings.Index(r.Text, "api-2:9090") {
		t.Errorf("resolved alert listed before a firing one:\n%s", r.Text)
	}
	if strings.Contains(r.HTML, "<script>") || !strings.Contains(r.HTML, "&lt;script&gt;") {
		t.Errorf("the annotation's markup is not escaped in the HTML part:\n%s", r.HTML)
	}
	if !strings.Contains(r.HTML, `href="http://alertmanager.example.com:9093/#/silences/new?filter=`) {
		t.Errorf("HTML lacks the silence link:\n%s", r.HTML)
	}
}

func TestSilenceURLMatchesTheUI(t *testing.T) {
	t.Parallel()
	got := SilenceURL("http://am:9093/", KV{"alertname": "High Latency", "job": `a"b`})
	prefix := "http://am:9093/#/silences/new?filter="
	if !strings.HasPrefix(got, prefix) {
		t.Fatalf("got %q", got)
	}
	if strings.Contains(got, "+") {
		t.Errorf("a space must be %%20 in a fragment, got %q", got)
	}
	filter, err := url.PathUnescape(strings.TrimPrefix(got, prefix))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{alertname="High Latency", job="a\"b"}`; filter != want {
		t.Errorf("filter %q, want %q", filter, want)
	}
}

func TestGrafanaMail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	n := load(t, SourceGrafana)
	r, err := b.set.Get(SourceGrafana).Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[FIRING:1] DiskFull Infra (db-1)"; r.Subject != want {
		t.Errorf("subject %q, want %q", r.Subject, want)
	}
	for _, want := range []string{"Disk / is 97% full", "Dashboard: https://grafana.example.com/d/abcd?orgId=1",
		"Panel:     https://grafana.example.com/d/abcd?orgId=1&viewPanel=2", "Value: [ var='A'",
		"Silence:   https://grafana.example.com/alerting/silence/new?"} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, r.Text)
		}
	}
}

func TestThreadIsStablePerGroup(t *testing.T) {
	t.Parallel()
	firing := load(t, SourceAlertmanager)
	resolved := load(t, SourceAlertmanager)
	resolved.Status = "resolved"
	resolved.Alerts = resolved.Alerts.Resolved()
	a, b := Thread("monitoring", firing, "contoso.com"), Thread("monitoring", resolved, "contoso.com")
	for _, h := range []string{"References", "In-Reply-To", "Thread-Topic", "Thread-Index"} {
		if a[h] == "" || a[h] != b[h] {
			t.Errorf("%s differs within a group: %q and %q", h, a[h], b[h])
		}
	}
	other := load(t, SourceAlertmanager)
	other.GroupKey = `{}:{alertname="Other"}`
	if Thread("monitoring", other, "contoso.com")["References"] == a["References"] {
		t.Error("two groups share a thread")
	}
	if Thread("billing", firing, "contoso.com")["References"] == a["References"] {
		t.Error("two apps share a thread")
	}
	if a["Thread-Topic"] != "HighLatency" {
		t.Errorf("Thread-Topic %q", a["Thread-Topic"])
	}
}

func TestLabelRecipients(t *testing.T) {
	t.Parallel()
	n := &Notification{CommonLabels: KV{"email_to": "a@x.com"}, Alerts: Alerts{
		{Labels: KV{"email_to": "a@x.com, b@x.com;c@x.com"}}, {Labels: KV{"other": "d@x.com"}}}}
	got := strings.Join(LabelRecipients(n, "email_to"), " ")
	if got != "a@x.com b@x.com c@x.com" {
		t.Errorf("got %q", got)
	}
	if LabelRecipients(n, "") != nil {
		t.Error("no label configured must give no recipients")
	}
}

func TestParseRefusesWhatIsNotANotification(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{`, `{"status":"firing","alerts":[]}`, `{"status":"odd","alerts":[{}]}`, `[]`} {
		if _, err := Parse(SourceAlertmanager, []byte(body)); err == nil {
			t.Errorf("%s: accepted", body)
		}
	}
}

func TestGrafanaMessageOnlyWhenCustom(t *testing.T) {
	t.Parallel()
	b := setup(t)
	n := load(t, SourceGrafana)
	r, err := b.set.Get(SourceGrafana).Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.Text, "**Firing**") {
		t.Errorf("Grafana's default message is repeated:\n%s", r.Text)
	}
	n.Message = "Call the DBA on duty: +49 30 1234"
	n.Alerts = append(n.Alerts, Alert{Status: "resolved", Labels: KV{"alertname": "DiskFull"}})
	r, err = b.set.Get(SourceGrafana).Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Text, "Call the DBA on duty") || !strings.Contains(r.HTML, "Call the DBA on duty") {
		t.Errorf("a custom message is missing:\n%s", r.Text)
	}
	if r.Subject != "[FIRING:1, RESOLVED:1] DiskFull Infra (db-1)" {
		t.Errorf("subject %q", r.Subject)
	}
}
