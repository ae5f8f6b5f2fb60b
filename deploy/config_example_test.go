package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/test/testpki"
)

// TestConfigExampleLoads loads config.example.yaml the way `mailgate serve`
// does: unknown keys, bad values and a From policy the routes cannot honour
// all fail it. The example's files, under /run/secrets/ and /etc/mailgate/,
// are moved to a temporary directory.
func TestConfigExampleLoads(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secret := strings.Repeat("k", 48) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "mailgate-signing-key"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	testpki.WriteSelfSigned(t, filepath.Join(dir, "relay.crt"), filepath.Join(dir, "relay.key"), "mail.contoso.com")
	testpki.WriteSelfSigned(t, filepath.Join(dir, "smtp.crt"), filepath.Join(dir, "smtp.key"), "relay.contoso.com")
	text := string(data)
	for _, from := range []string{"/run/secrets/", "/etc/mailgate/"} {
		text = strings.ReplaceAll(text, from, dir+string(filepath.Separator))
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"M365_TENANT_ID":     "00000000-0000-0000-0000-000000000001",
		"M365_CLIENT_ID":     "00000000-0000-0000-0000-000000000002",
		"M365_CLIENT_SECRET": "client-secret",
	}
	getenv := func(name string) string {
		v, ok := env[name]
		if !ok {
			t.Errorf("config.example.yaml uses ${%s}, which this test does not set", name)
		}
		return v
	}

	c, err := config.Load(path, getenv)
	if err != nil {
		t.Fatalf("config.example.yaml does not load:\n%v", err)
	}
	if c.Auth.SigningKey != strings.TrimSpace(secret) {
		t.Errorf("auth.signing_key_file was not read: signing key %q", c.Auth.SigningKey)
	}
	if got := c.Routes[0].Auth.OAuth.ClientSecret; got != env["M365_CLIENT_SECRET"] {
		t.Errorf("${M365_CLIENT_SECRET} was not expanded: %q", got)
	}
	if len(c.Routes) != 2 || len(c.Apps) != 3 {
		t.Errorf("want the example's 2 routes and 3 apps, have %d and %d", len(c.Routes), len(c.Apps))
	}
}
