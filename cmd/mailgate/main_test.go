package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testwait"
)

const validConfig = `
auth:
  signing_key: "${KEY}"
routes:
  - name: m365
    type: smtp-auth
    auth:
      mechanism: login
      username: relay@contoso.com
      password: secret
    send_as: ["*@alerts.contoso.com"]
apps:
  - id: monitoring
    route: m365
    from:
      allowed: ["*@alerts.contoso.com"]
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const key = "cmd-test-signing-key-0123456789abcdef"

func TestTokenIssuePrintsOnlyAVerifiableToken(t *testing.T) {
	cfg := writeConfig(t, validConfig)
	var out, errOut bytes.Buffer
	code := run([]string{"token", "issue", "--config", cfg, "--app", "monitoring", "--ttl", "1h"}, &out, &errOut, env(map[string]string{"KEY": key}))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	raw := strings.TrimSuffix(out.String(), "\n")
	if strings.ContainsAny(raw, " \n") || strings.Count(raw, ".") != 2 {
		t.Fatalf("stdout is not just a token: %q", out.String())
	}
	m, err := token.New(token.Options{Key: []byte(key), Issuer: "mailgate", Audience: "mailgate/mailgate"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Parse(raw)
	if err != nil || c.Subject != "monitoring" || c.ExpiresAt == nil {
		t.Fatalf("issued token: %+v, %v", c, err)
	}
	// MAILGATE_CONFIG stands in for --config; an unknown app is an error.
	code = run([]string{"token", "issue", "--app", "nope"}, &out, &errOut, env(map[string]string{"KEY": key, "MAILGATE_CONFIG": cfg}))
	if code != 1 || !strings.Contains(errOut.String(), `no app "nope"`) {
		t.Fatalf("unknown app: exit %d, %s", code, errOut.String())
	}
}

func TestConfigCheck(t *testing.T) {
	var out, errOut bytes.Buffer
	good := writeConfig(t, validConfig)
	if code := run([]string{"config", "check", "--config", good}, &out, &errOut, env(map[string]string{"KEY": key})); code != 0 || out.String() != "ok\n" {
		t.Fatalf("valid config: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	bad := writeConfig(t, strings.Replace(validConfig, `allowed: ["*@alerts.contoso.com"]`, `allowed: ["*@evil.com"]`, 1))
	out.Reset()
	errOut.Reset()
	code := run([]string{"config", "check", "--config", bad}, &out, &errOut, env(map[string]string{}))
	if code != 1 {
		t.Fatalf("bad config: exit %d", code)
	}
	for _, want := range []string{"auth.signing_key", "apps[monitoring].from.allowed[0]", "*@evil.com", "m365"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("config check output lacks %q:\n%s", want, errOut.String())
		}
	}
	out.Reset()
	if code := run([]string{"config", "check", "--mx", "contoso.com"}, &out, &errOut, env(nil)); code != 0 ||
		!strings.Contains(out.String(), "contoso-com.mail.protection.outlook.com") {
		t.Fatalf("--mx: exit %d, %q", code, out.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errOut, env(nil)); code != 2 || !strings.Contains(errOut.String(), "Usage") {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"version"}, &out, &errOut, env(nil)); code != 0 || !strings.HasPrefix(out.String(), "mailgate ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
}

// `mailgate token revoke` makes every running instance refuse the token by
// the time it returns, by token or by its id, and leaves the app's other
// tokens alone. The two instances hold the revocation list in memory, as
// `serve` does, and confirm each revocation; the command says how many did.
func TestTokenRevokeCommand(t *testing.T) {
	srv := redistest.Start(t)
	cfg := writeConfig(t, validConfig+"redis:\n  url: "+srv.URL()+"\n")
	e := env(map[string]string{"KEY": key})
	issue := func() string {
		var out, errOut bytes.Buffer
		if code := run([]string{"token", "issue", "--config", cfg, "--app", "monitoring", "--ttl", "1h"}, &out, &errOut, e); code != 0 {
			t.Fatalf("issue: %s", errOut.String())
		}
		return strings.TrimSpace(out.String())
	}
	byToken, byID, untouched := issue(), issue(), issue()
	var instances []*token.Manager
	for range 2 {
		revoked := token.NewRevocations(srv.Client(), "mailgate", nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); revoked.Watch(ctx, nil) }()
		t.Cleanup(func() { cancel(); <-done })
		testwait.Until(t, 10*time.Second, revoked.InMemory, "the revocation list to be held in memory")
		m, err := token.New(token.Options{Key: []byte(key), Issuer: "mailgate", Audience: "mailgate/mailgate", Revoked: revoked})
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range []string{byToken, byID} {
			if _, err := m.Verify(context.Background(), raw); err != nil {
				t.Fatalf("before revocation: %v", err)
			}
		}
		instances = append(instances, m)
	}
	c, err := instances[0].Parse(byID)
	if err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{byToken, c.ID} {
		var out, errOut bytes.Buffer
		if code := run([]string{"token", "revoke", "--config", cfg, arg}, &out, &errOut, e); code != 0 || !strings.HasPrefix(out.String(), "revoked ") {
			t.Fatalf("revoke: exit %d, %q %q", code, out.String(), errOut.String())
		}
		if errOut.String() != "2 running instance(s) confirmed\n" {
			t.Fatalf("revoke said %q on stderr, want both instances confirming", errOut.String())
		}
	}
	for i, instance := range instances {
		for _, raw := range []string{byToken, byID} {
			if _, err := instance.Verify(context.Background(), raw); !errors.Is(err, token.ErrRevoked) {
				t.Fatalf("instance %d: a revoked token verified: %v", i, err)
			}
		}
		if _, err := instance.Verify(context.Background(), untouched); err != nil {
			t.Fatalf("instance %d: revoking two tokens refused a third: %v", i, err)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"token", "revoke", "--config", cfg, "not-a-token"}, &out, &errOut, e); code != 2 {
		t.Fatalf("revoke of garbage: exit %d", code)
	}
}

// insecure_skip_verify on an Exchange route is refused by config check
// unless the second setting accepts the risk; then it is a warning.
func TestConfigCheckInsecureSkipVerify(t *testing.T) {
	e := env(map[string]string{"KEY": key})
	skip := strings.Replace(validConfig, "    auth:\n      mechanism: login", "    tls:\n      insecure_skip_verify: true\n    auth:\n      mechanism: login", 1)
	var out, errOut bytes.Buffer
	if code := run([]string{"config", "check", "--config", writeConfig(t, skip)}, &out, &errOut, e); code != 1 ||
		!strings.Contains(errOut.String(), "routes[m365].tls.insecure_skip_verify: refused") {
		t.Fatalf("without accept_risk: exit %d, stderr %q", code, errOut.String())
	}
	accepted := strings.Replace(skip, "insecure_skip_verify: true", "insecure_skip_verify: true\n      insecure_skip_verify_accept_risk: true", 1)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"config", "check", "--config", writeConfig(t, accepted)}, &out, &errOut, e); code != 0 || out.String() != "ok\n" ||
		!strings.Contains(errOut.String(), "warning: routes[m365].tls.insecure_skip_verify: the certificate of Exchange Online is NOT verified") {
		t.Fatalf("with accept_risk: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}

// `mailgate check` judges Redis's eviction policy as serve does.
func TestCheckRedisEviction(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{Args: []string{"--maxmemory-policy", "allkeys-lru"}})
	cfg := &config.Config{Redis: config.Redis{URL: srv.URL()}}
	var out bytes.Buffer
	if checkRedisEviction(context.Background(), cfg, &out) || !strings.Contains(out.String(), `✗ redis    Redis's maxmemory-policy is "allkeys-lru"`) {
		t.Fatalf("allkeys-lru passed: %s", out.String())
	}
	out.Reset()
	cfg.Redis.AllowEviction = true
	if !checkRedisEviction(context.Background(), cfg, &out) || !strings.Contains(out.String(), "risk accepted by redis.allow_eviction") {
		t.Fatalf("allow_eviction: %s", out.String())
	}
	out.Reset()
	if err := srv.Client().ConfigSet(context.Background(), "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if !checkRedisEviction(context.Background(), cfg, &out) || !strings.Contains(out.String(), "✓ redis    maxmemory-policy noeviction") {
		t.Fatalf("noeviction: %s", out.String())
	}
}

// Tokens expire after a year unless --ttl says otherwise; --ttl 0 (no
// expiry) is said on stderr, stdout carries only the token. Admin tokens
// too. Every token carries the installation's audience.
func TestTokenIssueExpiry(t *testing.T) {
	cfg := writeConfig(t, strings.Replace(validConfig, "auth:\n", "auth:\n  audience: mailgate.test\n", 1))
	e := env(map[string]string{"KEY": key})
	m, err := token.New(token.Options{Key: []byte(key), Issuer: "mailgate", Audience: "mailgate.test"})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(args ...string) (*token.Claims, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(append([]string{"token", "issue", "--config", cfg}, args...), &out, &errOut, e); code != 0 {
			t.Fatalf("issue %v: exit %d: %s", args, code, errOut.String())
		}
		c, err := m.Parse(strings.TrimSuffix(out.String(), "\n"))
		if err != nil {
			t.Fatalf("issue %v: stdout %q: %v", args, out.String(), err)
		}
		return c, errOut.String()
	}
	for _, who := range [][]string{{"--app", "monitoring"}, {"--admin", "ops"}} {
		c, msg := issue(who...)
		if c.ExpiresAt == nil || c.ExpiresAt.Sub(c.IssuedAt.Time) != 8760*time.Hour || !strings.Contains(msg, "expires") {
			t.Errorf("%v default: %+v, stderr %q", who, c.RegisteredClaims, msg)
		}
		if len(c.Audience) != 1 || c.Audience[0] != "mailgate.test" {
			t.Errorf("%v audience %v", who, c.Audience)
		}
		c, msg = issue(append(who, "--ttl", "0")...)
		if c.ExpiresAt != nil || !strings.Contains(msg, "does NOT expire") {
			t.Errorf("%v --ttl 0: %+v, stderr %q", who, c.RegisteredClaims, msg)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"token", "issue", "--config", cfg, "--app", "monitoring", "--ttl", "-1h"}, &out, &errOut, e); code != 2 || out.Len() != 0 {
		t.Errorf("negative ttl: exit %d, stdout %q", code, out.String())
	}
}
