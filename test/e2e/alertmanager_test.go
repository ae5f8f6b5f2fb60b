package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/testbin"
	"github.com/mailgate/mailgate/test/testwait"
)

// alertmanager is a real Prometheus Alertmanager run by the test.
type alertmanager struct {
	t    *testing.T
	base string
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startAlertmanager runs Alertmanager with one receiver whose
// webhook_config posts to url with httpConfig (YAML, indented for the
// http_config block), grouping by alertname with short waits so a test
// sees a notification within seconds.
func startAlertmanager(t *testing.T, url, httpConfig string) *alertmanager {
	t.Helper()
	bin := testbin.Path(t, "prometheus-alertmanager", "prometheus-alertmanager")
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`route:
  receiver: mailgate
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: mailgate
    webhook_configs:
      - url: %q
        send_resolved: true
        http_config:
%s
`, url, httpConfig)
	path := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+path, "--storage.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--cluster.listen-address=",
		"--web.external-url="+base, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", logs.String())
		}
	})
	testwait.Until(t, 30*time.Second, func() bool {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "alertmanager ready at %s", base)
	return &alertmanager{t: t, base: base}
}

// post sends alerts to Alertmanager's API v2, as Prometheus does.
func (am *alertmanager) post(alerts ...map[string]any) {
	am.t.Helper()
	b, err := json.Marshal(alerts)
	if err != nil {
		am.t.Fatal(err)
	}
	resp, err := http.Post(am.base+"/api/v2/alerts", "application/json", bytes.NewReader(b))
	if err != nil {
		am.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		am.t.Fatalf("alertmanager refused the alerts: %d", resp.StatusCode)
	}
}

func webhookApp(c *config.Config) {
	c.Apps[0].Webhooks.To = []string{"oncall@contoso.com"}
}

// waitMail waits for the n-th message (1-based) at the simulator.
func waitMail(t *testing.T, sim *exosim.Sim, n int) exosim.Message {
	t.Helper()
	return sim.WaitForMessages(t, n, 30*time.Second)[n-1]
}

func TestAlertmanagerFiringAndResolvedMailsThread(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		http func(tok string) string
	}{
		{"bearer", func(tok string) string {
			return "          authorization:\n            credentials: " + tok
		}},
		{"basic", func(tok string) string {
			return "          basic_auth:\n            username: alertmanager\n            password: " + tok
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, webhookApp)
			e.start("all")
			tok := e.token("monitoring")
			am := startAlertmanager(t, e.base+"/v1/webhooks/alertmanager", tc.http(tok))

			alert := map[string]any{
				"labels": map[string]string{"alertname": "HighLatency", "job": "api", "severity": "page", "instance": "api-1:9090"},
				"annotations": map[string]string{"summary": "p99 latency above 2s",
					"description": "api-1 answers in 3.2s <script>alert(1)</script>"},
				"generatorURL": "http://prometheus.example.com/graph?g0.expr=latency",
				"startsAt":     time.Now().Add(-time.Minute).UTC().Format(time.RFC3339),
			}
			am.post(alert)
			m := waitMail(t, e.sim, 1)
			p := parseDelivered(t, m.Data)
			if got := p.header.Get("Subject"); got != "[FIRING:1] HighLatency (api-1:9090 api page)" {
				t.Errorf("subject %q", got)
			}
			if strings.Join(m.Rcpt, ",") != "oncall@contoso.com" {
				t.Errorf("recipients %v", m.Rcpt)
			}
			for _, want := range []string{"FIRING: HighLatency", "p99 latency above 2s",
				"Source:    http://prometheus.example.com/graph?g0.expr=latency",
				"Silence:   " + am.base + "/#/silences/new?filter=%7Balertname%3D%22HighLatency%22"} {
				if !strings.Contains(p.text, want) {
					t.Errorf("text part lacks %q:\n%s", want, p.text)
				}
			}
			if !strings.Contains(p.html, "&lt;script&gt;alert(1)&lt;/script&gt;") || strings.Contains(p.html, "<script>") {
				t.Errorf("the annotation is not escaped in the HTML part:\n%s", p.html)
			}
			if !strings.Contains(p.html, `href="`+am.base+`/#/silences/new?filter=`) {
				t.Errorf("HTML part lacks the silence link:\n%s", p.html)
			}
			root := p.header.Get("References")
			if !strings.HasPrefix(root, "<group-") || p.header.Get("In-Reply-To") != root ||
				p.header.Get("Thread-Topic") != "HighLatency" || p.header.Get("Thread-Index") == "" {
				t.Errorf("threading headers: References %q In-Reply-To %q Thread-Topic %q Thread-Index %q",
					root, p.header.Get("In-Reply-To"), p.header.Get("Thread-Topic"), p.header.Get("Thread-Index"))
			}

			// Resolve it: the same alert with an end in the past.
			alert["endsAt"] = time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
			am.post(alert)
			m2 := waitMail(t, e.sim, 2)
			p2 := parseDelivered(t, m2.Data)
			if got := p2.header.Get("Subject"); got != "[RESOLVED] HighLatency (api-1:9090 api page)" {
				t.Errorf("resolved subject %q", got)
			}
			if !strings.Contains(p2.text, "RESOLVED: HighLatency") || !strings.Contains(p2.text, "Ended:") {
				t.Errorf("resolved text:\n%s", p2.text)
			}
			if p2.header.Get("References") != root || p2.header.Get("In-Reply-To") != root ||
				p2.header.Get("Thread-Topic") != "HighLatency" || p2.header.Get("Thread-Index") != p.header.Get("Thread-Index") {
				t.Errorf("the resolved mail is not in the firing mail's thread")
			}
			if p2.header.Get("Message-Id") == p.header.Get("Message-Id") {
				t.Error("two mails share a Message-ID")
			}
		})
	}
}
