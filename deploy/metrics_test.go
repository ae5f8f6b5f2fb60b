package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testbin"
	"github.com/mailgate/mailgate/test/testwait"
)

// TestAlertRules runs promtool over the rules: the syntax check, then the
// unit tests of mailgate-rules.test.yaml (firing and not firing, with the
// rendered annotations).
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := testbin.Path(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "prometheus/mailgate-rules.yaml"},
		{"test", "rules", "prometheus/mailgate-rules.test.yaml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestQueriesUseExportedMetrics starts a real gateway (redis-server, the
// Exchange Online simulator with its Entra token endpoint, an XOAUTH2
// route), delivers one message so that every labelled series exists, scrapes
// /metrics, and checks that every metric the dashboard and the alert rules
// query is among those scraped. A renamed metric, or a typo in a query,
// fails here rather than leaving an empty panel or a silent alert.
func TestQueriesUseExportedMetrics(t *testing.T) {
	t.Parallel()
	wanted := map[string][]string{} // metric name -> where it is used
	for name, where := range dashboardMetrics(t, "grafana/mailgate-dashboard.json") {
		wanted[name] = append(wanted[name], where...)
	}
	for name, where := range ruleMetrics(t, "prometheus/mailgate-rules.yaml") {
		wanted[name] = append(wanted[name], where...)
	}
	if len(wanted) < 10 {
		t.Fatalf("found only %d metric names in the dashboard and the rules: the extraction is broken", len(wanted))
	}

	exported := liveMetrics(t)
	var missing []string
	for name, where := range wanted {
		if !exported[name] {
			missing = append(missing, fmt.Sprintf("%s (in %s)", name, strings.Join(where, "; ")))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("queried but not exported by mailgate:\n  %s", strings.Join(missing, "\n  "))
	}
}

// liveMetrics returns the series names a running gateway exposes after it
// has accepted and delivered one message.
func liveMetrics(t *testing.T) map[string]bool {
	t.Helper()
	srv := redistest.Start(t)
	sim := exosim.Start(t, exosim.Options{Mailboxes: map[string]string{"relay@contoso.com": ""}})
	const clientID, secret = "6f1c3a55-0000-4000-8000-00000000d001", "deploy-test-secret"
	sim.RegisterClientSecret(clientID, secret)
	const signingKey = "deploy-test-signing-key-0123456789abcdef"
	cfg := &config.Config{
		Listen: "127.0.0.1:0",
		Redis:  config.Redis{URL: srv.URL()},
		Auth:   config.Auth{SigningKey: signingKey, Issuer: "mailgate"},
		Routes: []config.Route{{
			Name: "m365", Type: config.RouteSMTPAuth, Host: sim.Host(), Port: sim.Port(),
			TLS: config.RouteTLS{Mode: config.TLSStartTLS, CAFile: sim.CAFile()},
			Auth: config.RouteAuth{Mechanism: config.MechXOAUTH2, Username: "relay@contoso.com",
				OAuth: config.OAuth{TenantID: sim.TenantID(), ClientID: clientID, ClientSecret: secret, TokenURL: sim.TokenURL()}},
		}},
		Apps: []config.App{{ID: "monitoring", Route: "m365", From: config.AppFrom{Default: "relay@contoso.com"}}},
	}
	cfg.WithDefaults()
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatalf("test configuration is invalid:\n%v", config.Problems(problems))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Config: cfg, Listener: ln, ShutdownTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	base := "http://" + g.Addr()

	tokens, err := gateway.Tokens(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := tokens.Issue("monitoring", token.ScopeApp, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(map[string]any{"to": "ops@contoso.com", "subject": "metrics", "text": "hello"})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submission: %s\n%s", resp.Status, answer)
	}
	sim.WaitForMessages(t, 1, 20*time.Second)

	var names map[string]bool
	testwait.UntilNil(t, 20*time.Second, func() error {
		var err error
		if names, err = scrape(base + "/metrics"); err != nil {
			return err
		}
		// The outcome is recorded just after the simulator has the message,
		// the attempt's duration just before. Both are waited for: an
		// outcome can also be a message handed back without an attempt
		// (a busy Redis on a loaded machine), which has no duration.
		for _, m := range []string{"mailgate_delivery_outcomes_total", "mailgate_delivery_attempt_seconds_count"} {
			if !names[m] {
				return fmt.Errorf("no %s in /metrics yet", m)
			}
		}
		return nil
	})
	return names
}

// scrape returns the names of the series at url (the text format).
func scrape(url string) (map[string]bool, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names, sc.Err()
}

// dashboardMetrics returns the metrics of every panel query and template
// variable of a Grafana dashboard, with where each is used.
func dashboardMetrics(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string][]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			names := metricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("%s: panel %q: no metric in %q", path, p.Title, tg.Expr)
			}
			for _, n := range names {
				out[n] = append(out[n], "panel "+p.Title)
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("%s: variable %s: %v", path, v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("%s: variable %s: want label_values(metric, label), have %q", path, v.Name, q.Query)
			continue
		}
		out[m[1]] = append(out[m[1]], "variable "+v.Name)
	}
	return out
}

var labelValues = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$`)

// ruleMetrics returns the metrics of every rule expression in a Prometheus
// rule file.
func ruleMetrics(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string][]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			names := metricNames(r.Expr)
			if len(names) == 0 {
				t.Errorf("%s: alert %s: no metric in %q", path, r.Alert, r.Expr)
			}
			for _, n := range names {
				out[n] = append(out[n], "alert "+r.Alert)
			}
		}
	}
	return out
}

// metricNames finds the metric names of a PromQL expression: the
// identifiers left once strings, label matchers, ranges, grouping clauses,
// Grafana variables, function names and keywords are taken out. It is not a
// PromQL parser (Prometheus's own would pull the whole server into go.mod),
// but the expressions it reads are ours, and TestMetricNames pins it down.
func metricNames(expr string) []string {
	s := grafanaVar.ReplaceAllString(expr, " ")
	s = quoted.ReplaceAllString(s, " ")
	s = braces.ReplaceAllString(s, " ")
	s = brackets.ReplaceAllString(s, " ")
	s = grouping.ReplaceAllString(s, " ")
	var names []string
	for _, m := range identifier.FindAllStringSubmatchIndex(s, -1) {
		name := s[m[2]:m[3]]
		if rest := strings.TrimLeft(s[m[3]:], " \t\n"); strings.HasPrefix(rest, "(") || promqlKeywords[name] {
			continue // a function, or an operator such as and / unless
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

var (
	grafanaVar = regexp.MustCompile(`\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?`)
	quoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	braces     = regexp.MustCompile(`\{[^}]*\}`)
	brackets   = regexp.MustCompile(`\[[^\]]*\]`)
	grouping   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	// An identifier not glued to a number (0.95, 1e3) or to another name.
	identifier     = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_:.])([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

func TestMetricNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want []string
	}{
		{`max by (route) (mailgate_route_held{route=~"$route"}) == 1`, []string{"mailgate_route_held"}},
		{`histogram_quantile(0.95, sum by (route, le) (rate(mailgate_delivery_attempt_seconds_bucket{route=~"$route"}[$__rate_interval])))`,
			[]string{"mailgate_delivery_attempt_seconds_bucket"}},
		{"sum by (route) (increase(a_total{result=\"failure\"}[15m])) > 0\nunless\nsum by (route) (increase(b_total[15m])) > 0",
			[]string{"a_total", "b_total"}},
		{`rate(x[5m]) / on (instance) group_left (job) y > bool 1e3 offset 5m`, []string{"x", "y"}},
		{`up`, []string{"up"}},
	}
	for _, tt := range tests {
		if got := metricNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("metricNames(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}
