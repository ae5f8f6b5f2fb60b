package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/test/testbin"
)

// TestSystemdUnit checks mailgate.service with systemd's own tools:
// `systemd-analyze verify` (an unknown or misspelt directive is only a
// warning there, so any output fails the test), then `systemd-analyze
// security --offline` with a threshold, so a hardening line that goes away
// shows. ExecStart must name an existing program, so the copy checked here
// runs this test binary instead of /usr/local/bin/mailgate.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	analyze := testbin.Path(t, "systemd-analyze", "systemd")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := string(mustRead(t, "systemd/mailgate.service"))
	const bin = "/usr/local/bin/mailgate serve"
	if !strings.Contains(unit, "ExecStart="+bin) {
		t.Fatalf("mailgate.service: ExecStart is not %s ...", bin)
	}
	// The unit's name is what systemd-analyze reports on.
	path := filepath.Join(t.TempDir(), "mailgate.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "ExecStart=/usr/local/bin/mailgate", "ExecStart="+self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify mailgate.service: %v\n%s", err, out)
	}
	// Exposure is 0 (none) to 10 (fully exposed), the threshold is in
	// tenths: 20 is 2.0, "OK" in systemd's words. The unit scores 1.2.
	out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=20", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v):\n%s", err, out)
	}

	// The configuration reads its secrets from $CREDENTIALS_DIRECTORY,
	// where LoadCredential puts them.
	creds := t.TempDir()
	for _, name := range []string{"signing-key", "m365-client-secret"} {
		if !strings.Contains(unit, "LoadCredential="+name+":") {
			t.Errorf("mailgate.service does not load the credential %s", name)
		}
		if err := os.WriteFile(filepath.Join(creds, name), []byte(strings.Repeat("s", 40)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := config.Load("systemd/config.yaml", func(name string) string {
		if name != "CREDENTIALS_DIRECTORY" {
			t.Errorf("systemd/config.yaml uses ${%s}, which systemd does not set", name)
		}
		return creds
	})
	if err != nil {
		t.Fatalf("systemd/config.yaml does not load:\n%v", err)
	}
	if c.Auth.SigningKey != strings.Repeat("s", 40) || c.Routes[0].Auth.OAuth.ClientSecret != strings.Repeat("s", 40) {
		t.Error("systemd/config.yaml does not read its secrets from the credentials")
	}
}
