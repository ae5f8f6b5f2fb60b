package config

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExampleIsValid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if problems := b.check(t, exampleYAML); len(problems) > 0 {
		t.Fatalf("the contract's example has problems:\n%s", Problems(problems))
	}
	c := b.load(t, exampleYAML)
	if c.Auth.SigningKey != testSigningKey {
		t.Errorf("signing_key = %q, want it expanded to %q", c.Auth.SigningKey, testSigningKey)
	}
	m365 := c.Route("m365")
	if m365 == nil || m365.Auth.OAuth.ClientSecret != "client-secret" {
		t.Fatalf("routes[m365] = %+v, want client_secret expanded", m365)
	}
	if got, want := m365.SendAs, []string{"helpdesk@contoso.com", "*@alerts.contoso.com"}; !reflect.DeepEqual(got, want) {
		t.Errorf("send_as = %q, want %q", got, want)
	}
	relay := c.Route("relay")
	if relay == nil || relay.TLS.ClientKeyFile != filepath.Join(b.dir, "relay.key") {
		t.Errorf("routes[relay] = %+v", relay)
	}
	app := c.App("monitoring")
	if app == nil || app.Recipients.MaxPerMessage != 50 || app.RateLimit.PerMinute != 120 || app.Route != "relay" {
		t.Errorf("apps[monitoring] = %+v", app)
	}
	if c.App("nope") != nil || c.Route("nope") != nil {
		t.Error("App or Route found something that does not exist")
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.load(t, minimalYAML)

	want := Config{
		Listen:    ":8080",
		Redis:     Redis{URL: "redis://127.0.0.1:6379/0", KeyPrefix: "mailgate", ReplicaAckTimeout: time.Second},
		Auth:      Auth{SigningKey: "0123456789abcdef0123456789abcdef", Issuer: "mailgate", Audience: "mailgate/mailgate"},
		Retention: 168 * time.Hour,
		Delivery: Delivery{
			MaxAge:            24 * time.Hour,
			BackoffInitial:    30 * time.Second,
			BackoffMax:        30 * time.Minute,
			VisibilityTimeout: time.Minute,
			ConnectTimeout:    30 * time.Second,
			CommandTimeout:    5 * time.Minute,
			IdleTimeout:       30 * time.Second,
			PollInterval:      200 * time.Millisecond,
			ProbeInterval:     time.Minute,
			MaxScheduleAhead:  72 * time.Hour,
		},
		Log: Log{Level: "info", Format: "text"},
		API: API{MaxInFlightBytes: 256 << 20, MaxInFlightBytesPerApp: 64 << 20,
			MinBodyRate: 4096, BodyRateGrace: 10 * time.Second},
		Routes: []Route{{
			Name: "m365",
			Type: "smtp-auth",
			Host: "smtp.office365.com",
			Port: 587,
			TLS:  RouteTLS{Mode: "starttls"},
			Auth: RouteAuth{
				Mechanism: "xoauth2",
				Username:  "relay@contoso.com",
				OAuth: OAuth{
					TenantID:     "contoso.onmicrosoft.com",
					ClientID:     "app",
					ClientSecret: "s",
					Scope:        "https://outlook.office365.com/.default",
				},
			},
			Limits: Limits{MessagesPerMinute: 30, MaxConnections: 3, RecipientsPerDay: 10000},
			Queue:  QueueLimit{MaxMessages: 100000, MaxBytes: 1 << 30},
		}},
		Apps: []App{{
			ID:              "app",
			Route:           "m365",
			From:            AppFrom{Default: "relay@contoso.com"},
			Recipients:      AppRecipients{MaxPerMessage: 500},
			MaxMessageBytes: 26214400,
			Webhooks: AppWebhooks{GrafanaSignatureHeader: "X-Grafana-Alerting-Signature",
				AlertmanagerTemplate: "alertmanager", GrafanaTemplate: "grafana"},
			Queue: QueueLimit{MaxMessages: 100000, MaxBytes: 1 << 30}, // alone on its route: all of it
		}},
		SMTP: SMTP{MaxMessageBytes: 36700160, MaxRecipients: 100, MaxConnections: 1000, MaxConnectionsPerIP: 100,
			ReadTimeout: 5 * time.Minute, WriteTimeout: time.Minute, DataTimeout: 10 * time.Minute},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *c, want)
	}
}

// An app's share of its route's queue: all of it alone, half when shared;
// what the file says is kept.
func TestAppQueueShareDefaults(t *testing.T) {
	t.Parallel()
	c := &Config{
		Routes: []Route{{Name: "a", Type: RouteSMTP}, {Name: "b", Type: RouteSMTP, Queue: QueueLimit{MaxMessages: 10, MaxBytes: 1000}}},
		Apps: []App{{ID: "alone", Route: "a", From: AppFrom{Default: "a@contoso.com"}}, {ID: "one", Route: "b", From: AppFrom{Default: "b@contoso.com"}},
			{ID: "two", Route: "b", From: AppFrom{Default: "c@contoso.com"}, Queue: QueueLimit{MaxBytes: 900}}},
	}
	c.WithDefaults()
	want := []QueueLimit{{DefaultQueueMaxMessages, DefaultQueueMaxBytes}, {5, 500}, {5, 900}}
	for i, w := range want {
		if c.Apps[i].Queue != w {
			t.Errorf("apps[%s].queue = %+v, want %+v", c.Apps[i].ID, c.Apps[i].Queue, w)
		}
	}
	pols, err := c.Policies()
	if err != nil {
		t.Fatal(err)
	}
	if got := pols["two"].QueueLimits(); got.RouteMessages != 10 || got.RouteBytes != 1000 || got.AppMessages != 5 || got.AppBytes != 900 {
		t.Errorf("policy of two: queue limits %+v", got)
	}
}

func TestRouteDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Route
		want Route
	}{
		{
			name: "smtp-auth",
			in:   Route{Type: RouteSMTPAuth},
			want: Route{
				Type: RouteSMTPAuth, Host: "smtp.office365.com", Port: 587,
				TLS:    RouteTLS{Mode: "starttls"},
				Auth:   RouteAuth{Mechanism: "xoauth2", OAuth: OAuth{Scope: "https://outlook.office365.com/.default"}},
				Limits: Limits{MessagesPerMinute: 30, MaxConnections: 3, RecipientsPerDay: 10000},
			},
		},
		{
			name: "smtp-auth with login keeps its settings and gets no scope",
			in:   Route{Type: RouteSMTPAuth, Host: "smtp.example", Port: 25, Auth: RouteAuth{Mechanism: "login"}, Limits: Limits{MaxConnections: 1}},
			want: Route{
				Type: RouteSMTPAuth, Host: "smtp.example", Port: 25,
				TLS:    RouteTLS{Mode: "starttls"},
				Auth:   RouteAuth{Mechanism: "login"},
				Limits: Limits{MessagesPerMinute: 30, MaxConnections: 1, RecipientsPerDay: 10000},
			},
		},
		{
			name: "connector derives its host from the first accepted domain",
			in:   Route{Type: RouteConnector, AcceptedDomains: []string{"Contoso.com", "fabrikam.com"}},
			want: Route{
				Type: RouteConnector, Host: "contoso-com.mail.protection.outlook.com", Port: 25,
				TLS:             RouteTLS{Mode: "starttls"},
				AcceptedDomains: []string{"Contoso.com", "fabrikam.com"},
				Limits:          Limits{MaxConnections: 3},
			},
		},
		{
			name: "connector keeps a given host",
			in:   Route{Type: RouteConnector, Host: "mx.example", AcceptedDomains: []string{"contoso.com"}},
			want: Route{
				Type: RouteConnector, Host: "mx.example", Port: 25,
				TLS:             RouteTLS{Mode: "starttls"},
				AcceptedDomains: []string{"contoso.com"},
				Limits:          Limits{MaxConnections: 3},
			},
		},
		{
			name: "smtp",
			in:   Route{Type: RouteSMTP, Host: "localhost", TLS: RouteTLS{Mode: "none"}},
			want: Route{Type: RouteSMTP, Host: "localhost", Port: 25, TLS: RouteTLS{Mode: "none"}, Limits: Limits{MaxConnections: 3}},
		},
		{
			name: "unknown type gets only the queue limit",
			in:   Route{Type: "exchange"},
			want: Route{Type: "exchange"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &Config{Routes: []Route{tt.in}}
			if got := c.WithDefaults(); got != c {
				t.Error("WithDefaults did not return its receiver")
			}
			want := tt.want
			want.Queue = QueueLimit{MaxMessages: DefaultQueueMaxMessages, MaxBytes: DefaultQueueMaxBytes}
			if !reflect.DeepEqual(c.Routes[0], want) {
				t.Errorf("\n got %+v\nwant %+v", c.Routes[0], want)
			}
		})
	}
}

func TestMXHost(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"contoso.com", "contoso-com.mail.protection.outlook.com"},
		{"Contoso.COM", "contoso-com.mail.protection.outlook.com"},
		{"my-company.co.uk", "my-company-co-uk.mail.protection.outlook.com"},
		{"contoso.com.", "contoso-com.mail.protection.outlook.com"},
	}
	for _, tt := range tests {
		if got := MXHost(tt.in); got != tt.want {
			t.Errorf("MXHost(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// envBase is minimalYAML with places for what the env tests change.
const envBase = `
auth:
  signing_key: "0123456789abcdef0123456789abcdef"
  issuer: ISSUER
routes:
  - name: m365
    type: smtp-auth
    port: PORT
    auth:
      username: relay@contoso.com
      oauth: {tenant_id: contoso.onmicrosoft.com, client_id: app, client_secret: SECRET}
apps:
  - id: app
    route: m365
    from: {default: relay@contoso.com}
`

func TestEnvExpansion(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"ISS":       "my-issuer",
		"TILDE":     "~",
		"NUM":       "0123",
		"PORT":      "2525",
		"INJECT":    "x\nroutes: []\napps: []",
		"FLOW":      "{a: b}",
		"SECRET":    "s3cr3t",
		"ANCHORED":  "anchored",
		"NOT_A_NUM": "abc",
	}
	type result struct{ issuer, secret string }
	tests := []struct {
		name   string
		issuer string // replaces ISSUER
		port   string // replaces PORT
		secret string // replaces SECRET
		want   result
		// wantPort is the decoded port; 0 skips the check.
		wantPort int
		// wantKey and wantMsg: the problem expected instead of a result.
		wantKey, wantMsg string
	}{
		{name: "whole value", issuer: "${ISS}", want: result{issuer: "my-issuer"}},
		{name: "quoted, inside text", issuer: `"a-${ISS}-b"`, want: result{issuer: "a-my-issuer-b"}},
		{name: "two variables", issuer: `"${ISS}/${SECRET}"`, want: result{issuer: "my-issuer/s3cr3t"}},
		{name: "$$ escapes a dollar", issuer: `"a$$b"`, want: result{issuer: "a$b"}},
		{name: "$$ before a brace is not a variable", issuer: `"$${ISS}"`, want: result{issuer: "${ISS}"}},
		{name: "a lone $ stays", issuer: `"pa$word$"`, want: result{issuer: "pa$word$"}},
		{name: "a string stays a string", issuer: "${TILDE}", secret: `"${NUM}"`, want: result{issuer: "~", secret: "0123"}},
		{name: "no YAML injection through a newline", issuer: "${INJECT}", want: result{issuer: "x\nroutes: []\napps: []"}},
		{name: "no YAML injection through flow syntax", issuer: "${FLOW}", want: result{issuer: "{a: b}"}},
		{name: "a number from the environment", port: "${PORT}", wantPort: 2525},
		{name: "a quoted number from the environment", port: `"${PORT}"`, wantPort: 2525},
		{name: "not a number from the environment", port: "${NOT_A_NUM}", wantKey: "routes[m365].port", wantMsg: `want a whole number, got "abc"`},
		{name: "in a list item's field", secret: `"${SECRET}"`, want: result{secret: "s3cr3t"}},
		{name: "anchor and alias expand once", issuer: `&i "$$${ANCHORED}"`, secret: "*i", want: result{issuer: "$anchored", secret: "$anchored"}},

		{name: "unset", issuer: "${NOPE}", wantKey: "auth.issuer", wantMsg: "environment variable NOPE is not set (or is empty)"},
		{name: "unset in a route", secret: `"${NOPE}"`, wantKey: "routes[m365].auth.oauth.client_secret", wantMsg: "environment variable NOPE is not set"},
		{name: "several unset", issuer: `"${A1}${B2}"`, wantKey: "auth.issuer", wantMsg: "environment variables A1, B2 are not set"},
		{name: "unterminated", issuer: `"${ISS"`, wantKey: "auth.issuer", wantMsg: `without a closing "}"`},
		{name: "bad name", issuer: `"${1X}"`, wantKey: "auth.issuer", wantMsg: `"1X" is not a valid environment variable name`},
		{name: "empty name", issuer: `"${}"`, wantKey: "auth.issuer", wantMsg: `"" is not a valid environment variable name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.env = env
			yaml := strings.NewReplacer(
				"ISSUER", or(tt.issuer, "mailgate"),
				"PORT", or(tt.port, "587"),
				"SECRET", or(tt.secret, "s"),
			).Replace(envBase)
			problems := b.check(t, yaml)
			if tt.wantKey != "" {
				wantProblem(t, problems, tt.wantKey, tt.wantMsg)
				// The value left empty must not also be reported as missing.
				for _, p := range problems {
					if p.Key == tt.wantKey && strings.Contains(p.Message, "required") {
						t.Errorf("reported twice: %s", p)
					}
				}
				return
			}
			if len(problems) > 0 {
				t.Fatalf("problems:\n%s", Problems(problems))
			}
			c := b.load(t, yaml)
			if tt.want.issuer != "" && c.Auth.Issuer != tt.want.issuer {
				t.Errorf("issuer = %q, want %q", c.Auth.Issuer, tt.want.issuer)
			}
			if tt.want.secret != "" && c.Routes[0].Auth.OAuth.ClientSecret != tt.want.secret {
				t.Errorf("client_secret = %q, want %q", c.Routes[0].Auth.OAuth.ClientSecret, tt.want.secret)
			}
			if tt.wantPort != 0 && c.Routes[0].Port != tt.wantPort {
				t.Errorf("port = %d, want %d", c.Routes[0].Port, tt.wantPort)
			}
			if len(c.Routes) != 1 || len(c.Apps) != 1 {
				t.Errorf("the file's structure changed: %d routes, %d apps", len(c.Routes), len(c.Apps))
			}
		})
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestFileProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		key     string // "" means the file's path
		wantMsg []string
	}{
		{name: "syntax", yaml: "listen: ':1'\nroutes:\n  - name: a\n   type: b\n", wantMsg: []string{"line 2: did not find expected"}},
		{name: "tab indentation", yaml: "routes:\n\t- name: a\n", wantMsg: []string{"line 2"}},
		{name: "empty file", yaml: "", wantMsg: []string{"the file is empty"}},
		{name: "only comments", yaml: "# nothing\n", wantMsg: []string{"the file is empty"}},
		{name: "two documents", yaml: "listen: ':1'\n---\nlisten: ':2'\n", wantMsg: []string{"more than one YAML document"}},
		{name: "duplicate key", yaml: "listen: ':1'\nlisten: ':2'\n", wantMsg: []string{`"listen" already defined`}},
		{name: "not a mapping", yaml: "- a\n- b\n", wantMsg: []string{"want a mapping of keys, found a list"}},

		{name: "unknown top-level key", yaml: "listn: ':1'\n", key: "listn", wantMsg: []string{"unknown key (line 1)", `did you mean "listen"?`}},
		{name: "unknown key in a route", yaml: "routes:\n  - name: m365\n    send-as: [a@b.com]\n", key: "routes[m365].send-as", wantMsg: []string{"unknown key (line 3)", `did you mean "send_as"?`}},
		{name: "unknown nested key", yaml: "routes:\n  - name: m365\n    tls: {mod: none}\n", key: "routes[m365].tls.mod", wantMsg: []string{"unknown key", `did you mean "mode"?`}},
		{name: "unknown key in an unnamed app", yaml: "apps:\n  - route: x\n    form: {}\n", key: "apps[0].form", wantMsg: []string{"unknown key", `did you mean "from"?`}},
		{name: "unknown key, nothing close", yaml: "auth:\n  zzzzzzzzzz: 1\n", key: "auth.zzzzzzzzzz", wantMsg: []string{"unknown key (line 2)"}},

		{name: "not a number", yaml: "routes:\n  - name: m365\n    port: abc\n", key: "routes[m365].port", wantMsg: []string{`want a whole number, got "abc" (line 3)`}},
		{name: "a duration without unit", yaml: "delivery:\n  max_age: 24\n", key: "delivery.max_age", wantMsg: []string{"want a duration such as 30s"}},
		{name: "not a bool", yaml: "routes:\n  - name: m365\n    tls: {insecure_skip_verify: maybe}\n", key: "routes[m365].tls.insecure_skip_verify", wantMsg: []string{"want true or false"}},
		{name: "a mapping for a list", yaml: "routes: {name: m365}\n", key: "routes", wantMsg: []string{"want a list, found a mapping"}},
		{name: "a scalar for a mapping", yaml: "routes:\n  - name: m365\n    tls: starttls\n", key: "routes[m365].tls", wantMsg: []string{`want a mapping of keys, found "starttls"`}},
		{name: "a list for a scalar", yaml: "listen: [a]\n", key: "listen", wantMsg: []string{"want a single value, found a list"}},
		{name: "a scalar for a list", yaml: "routes:\n  - name: m365\n    send_as: a@b.com\n", key: "routes[m365].send_as", wantMsg: []string{"want a list"}},
		{name: "an unknown key under a merge", yaml: "x: &d {port: 25}\n", key: "x", wantMsg: []string{"unknown key"}},
		{name: "merged keys are checked too", yaml: "routes:\n  - name: m365\n    tls: &t {mode: none, bad: 1}\n  - name: b\n    tls: {<<: *t}\n", key: "routes[b].tls.bad", wantMsg: []string{"unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			path := b.write(t, "mailgate.yaml", tt.yaml)
			key := tt.key
			if key == "" {
				key = path
			}
			wantProblem(t, Check(path, b.getenv), key, tt.wantMsg...)
		})
	}
}

func TestMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path, nil)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load error = %v, want Problems", err)
	}
	wantProblem(t, ps, path, "cannot read the configuration file: no such file or directory")
}

func TestProblemsError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := Load(b.write(t, "mailgate.yaml", "listen: ''\nlog: {level: loud}\n"), b.getenv)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load error = %v, want Problems", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(ps) || len(ps) < 4 {
		t.Fatalf("Error() has %d lines for %d problems:\n%s", len(lines), len(ps), err)
	}
	for i, p := range ps {
		if lines[i] != p.Key+": "+p.Message {
			t.Errorf("line %d = %q, want %q", i, lines[i], p.Key+": "+p.Message)
		}
	}
	// listen "" is defaulted; these are the ones that cannot be.
	wantProblem(t, ps, "log.level", `want debug, info, warn or error, got "loud"`)
	wantProblem(t, ps, "auth.signing_key", "required")
	wantProblem(t, ps, "routes", "at least one route")
	wantProblem(t, ps, "apps", "at least one app")
}

func TestSecretFiles(t *testing.T) {
	t.Parallel()
	const base = `
redis: {REDIS}
auth: {AUTH}
routes:
  - name: m365
    type: smtp-auth
    auth:
      username: relay@contoso.com
      oauth: {tenant_id: t, client_id: c, OAUTH}
  - name: basic
    type: smtp-auth
    auth: {mechanism: login, username: relay@contoso.com, PASSWORD}
apps:
  - {id: app, route: m365, from: {default: relay@contoso.com}}
`
	const key = "0123456789abcdef0123456789abcdef"
	type want struct{ signingKey, secret, password, redisURL string }
	tests := []struct {
		name                         string
		redis, auth, oauth, password string
		want                         want
		wantKey                      string
		wantMsg                      []string
	}{
		{
			name:     "each secret from a file, trailing white space trimmed",
			redis:    "url_file: '{{DIR}}/redis'",
			auth:     "signing_key_file: '{{DIR}}/signing'",
			oauth:    "client_secret_file: '{{DIR}}/secret'",
			password: "password_file: '{{DIR}}/password'",
			want:     want{signingKey: key, secret: "  inner space kept", password: "pw", redisURL: "rediss://:pw@redis:6380/1"},
		},
		{
			name:    "value and file both set",
			auth:    "signing_key: " + key + ", signing_key_file: '{{DIR}}/signing'",
			oauth:   "client_secret: s",
			wantKey: "auth.signing_key", wantMsg: []string{"both auth.signing_key and auth.signing_key_file are set"},
		},
		{
			name:    "client secret both set",
			auth:    "signing_key: " + key,
			oauth:   "client_secret: s, client_secret_file: '{{DIR}}/secret'",
			wantKey: "routes[m365].auth.oauth.client_secret", wantMsg: []string{"both routes[m365].auth.oauth.client_secret and routes[m365].auth.oauth.client_secret_file are set"},
		},
		{
			name:     "password both set",
			auth:     "signing_key: " + key,
			oauth:    "client_secret: s",
			password: "password: x, password_file: '{{DIR}}/password'",
			wantKey:  "routes[basic].auth.password", wantMsg: []string{"both routes[basic].auth.password and routes[basic].auth.password_file"},
		},
		{
			name:    "redis url both set",
			redis:   "url: redis://x, url_file: '{{DIR}}/redis'",
			auth:    "signing_key: " + key,
			oauth:   "client_secret: s",
			wantKey: "redis.url", wantMsg: []string{"both redis.url and redis.url_file"},
		},
		{
			name:    "missing file",
			auth:    "signing_key_file: '{{DIR}}/nope'",
			oauth:   "client_secret: s",
			wantKey: "auth.signing_key_file", wantMsg: []string{"cannot read the secret", "no such file"},
		},
		{
			name:    "empty file",
			auth:    "signing_key_file: '{{DIR}}/empty'",
			oauth:   "client_secret: s",
			wantKey: "auth.signing_key_file", wantMsg: []string{"empty"},
		},
		{
			name:    "short key from a file is still checked",
			auth:    "signing_key_file: '{{DIR}}/short'",
			oauth:   "client_secret: s",
			wantKey: "auth.signing_key", wantMsg: []string{"is 5 bytes"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.write(t, "signing", key+"\n")
			b.write(t, "secret", "  inner space kept \r\n\t")
			b.write(t, "password", "pw\n\n")
			b.write(t, "redis", "rediss://:pw@redis:6380/1\n")
			b.write(t, "empty", "\n")
			b.write(t, "short", "short\n")
			yaml := strings.NewReplacer(
				"{REDIS}", "{"+tt.redis+"}",
				"{AUTH}", "{"+tt.auth+"}",
				"OAUTH", tt.oauth,
				"PASSWORD", or(tt.password, "password: pw"),
			).Replace(base)
			problems := b.check(t, yaml)
			if tt.wantKey != "" {
				wantProblem(t, problems, tt.wantKey, tt.wantMsg...)
				return
			}
			if len(problems) > 0 {
				t.Fatalf("problems:\n%s", Problems(problems))
			}
			c := b.load(t, yaml)
			got := want{c.Auth.SigningKey, c.Routes[0].Auth.OAuth.ClientSecret, c.Routes[1].Auth.Password, c.Redis.URL}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Setting sentinel (or cluster) alone is enough: the single-node default
// stays out of the way, and the passwords come from their files.
func TestRedisSentinelFromFiles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pw := b.write(t, "redis.pw", "data-secret\n")
	spw := b.write(t, "sentinel.pw", "sentinel-secret\n")
	yaml := strings.Replace(exampleYAML, `  url: "redis://127.0.0.1:6379/0"      # rediss:// for TLS`, `  sentinel:
    master_name: mymaster
    addrs: ["10.0.0.1:26379", "10.0.0.2:26379"]
    password_file: `+pw+`
    sentinel_password_file: `+spw+`
  min_replicas_acked: 1`, 1)
	c := b.load(t, yaml)
	r := c.Redis
	if r.URL != "" || r.Sentinel.Password != "data-secret" || r.Sentinel.SentinelPassword != "sentinel-secret" ||
		r.MinReplicasAcked != 1 || r.ReplicaAckTimeout != time.Second || len(r.Sentinel.Addrs) != 2 {
		t.Fatalf("redis = %+v", r)
	}

	cluster := strings.Replace(exampleYAML, `  url: "redis://127.0.0.1:6379/0"      # rediss:// for TLS`, `  url: "redis://127.0.0.1:6379/0"
  cluster: {addrs: ["10.0.0.1:6379"]}`, 1)
	wantProblem(t, b.check(t, cluster), "redis.cluster", "exactly one")
}
