package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/test/testpki"
)

// exampleYAML is a complete example configuration, with the certificate
// paths pointing into the test's directory ({{DIR}}).
const exampleYAML = `
listen: ":8080"
redis:
  url: "redis://127.0.0.1:6379/0"      # rediss:// for TLS
auth:
  signing_key: "${MAILGATE_SIGNING_KEY}" # HS256 secret, at least 32 bytes; or signing_key_file
  issuer: "mailgate"
delivery:
  max_age: 24h                           # a message still not delivered after this fails
retention: 168h                          # how long finished messages stay readable by id

routes:                                  # the ways out to Exchange Online; one sending identity each
  - name: m365
    type: smtp-auth                      # smtp-auth | connector | smtp
    host: smtp.office365.com
    port: 587
    tls:
      mode: starttls                     # starttls | implicit | none (none only for type smtp)
      ca_file: ""                        # extra roots, for tests and private relays
      server_name: ""
      insecure_skip_verify: false
    auth:
      mechanism: xoauth2                 # xoauth2 | login | plain
      username: relay@contoso.com        # the mailbox to authenticate as
      password: ""                       # login/plain only
      oauth:
        tenant_id: "..."
        client_id: "..."
        client_secret: "${M365_CLIENT_SECRET}"   # or client_certificate_file + client_key_file
        token_url: ""                    # override, for tests; default is the Entra v2 token endpoint of tenant_id
        scope: "https://outlook.office365.com/.default"
    send_as:                             # addresses this mailbox holds Send As on (the mailbox itself is implicit)
      - helpdesk@contoso.com
      - "*@alerts.contoso.com"
    limits:                              # per sending mailbox, across all instances
      messages_per_minute: 30
      max_connections: 3
      recipients_per_day: 10000

  - name: relay
    type: connector                      # port 25 to the tenant MX host, TLS required, no AUTH
    host: contoso-com.mail.protection.outlook.com
    port: 25
    tls:
      mode: starttls
      client_cert_file: {{DIR}}/relay.crt   # for a certificate-based connector
      client_key_file: {{DIR}}/relay.key
    accepted_domains: ["contoso.com", "alerts.contoso.com"]

apps:
  - id: monitoring
    route: relay
    from:
      default: "Alerts <alerts@alerts.contoso.com>"
      allowed: ["alerts@alerts.contoso.com", "*@alerts.contoso.com"]
    recipients:
      allowed: ["*@contoso.com"]         # optional; absent means any
      max_per_message: 50
    rate_limit:
      per_minute: 120                    # API-side; over it the API answers 429
    max_message_bytes: 26214400
    disabled: false
`

// minimalYAML is the shortest valid file: everything else is defaulted.
const minimalYAML = `
auth:
  signing_key: "0123456789abcdef0123456789abcdef"
routes:
  - name: m365
    type: smtp-auth
    auth:
      username: relay@contoso.com
      oauth: {tenant_id: contoso.onmicrosoft.com, client_id: app, client_secret: s}
apps:
  - id: app
    route: m365
    from: {default: relay@contoso.com}
`

const testSigningKey = "a-signing-key-of-more-than-32-bytes!"

type testBundle struct {
	dir string
	env map[string]string
}

// setup makes a directory holding a certificate and key pair (relay.crt,
// relay.key) and an environment for exampleYAML.
func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{
		dir: t.TempDir(),
		env: map[string]string{
			"MAILGATE_SIGNING_KEY": testSigningKey,
			"M365_CLIENT_SECRET":   "client-secret",
		},
	}
	certPEM, keyPEM := testpki.SelfSigned(t, "contoso.com")
	b.write(t, "relay.crt", string(certPEM))
	b.write(t, "relay.key", string(keyPEM))
	return b
}

func (b *testBundle) getenv(name string) string { return b.env[name] }

// write writes a file into the bundle's directory and returns its path.
func (b *testBundle) write(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// check writes yaml ({{DIR}} replaced) to a file and runs Check on it.
func (b *testBundle) check(t *testing.T, yaml string) []Problem {
	t.Helper()
	return Check(b.write(t, "mailgate.yaml", strings.ReplaceAll(yaml, "{{DIR}}", b.dir)), b.getenv)
}

// load is Load on yaml; it fails the test on any problem.
func (b *testBundle) load(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Load(b.write(t, "mailgate.yaml", strings.ReplaceAll(yaml, "{{DIR}}", b.dir)), b.getenv)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

// wantProblem fails unless problems holds one at key whose message contains
// every one of want.
func wantProblem(t *testing.T, problems []Problem, key string, want ...string) {
	t.Helper()
	for _, p := range problems {
		if p.Key != key {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(p.Message, w)
		}
		if ok {
			return
		}
	}
	t.Errorf("no problem at %s containing %q; got:\n%s", key, want, Problems(problems))
}
