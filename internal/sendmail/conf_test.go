package sendmail

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestLoadConf(t *testing.T) {
	t.Parallel()
	tokFile := writeFile(t, "token", "  tok-from-file\n")
	path := writeFile(t, "sendmail.conf", `# mailgate sendmail
url = https://mailgate.contoso.com
token_file = `+tokFile+`
spool_dir = "/var/spool/mailgate"
local_domain = @host.contoso.com
alias root = ops@contoso.com, Backup@contoso.com
alias  Www-Data = web
`)
	c, err := LoadConf(path, true, env())
	if err != nil {
		t.Fatal(err)
	}
	want := Conf{URL: "https://mailgate.contoso.com", TokenFile: tokFile, SpoolDir: "/var/spool/mailgate",
		LocalDomain: "host.contoso.com", Aliases: map[string][]string{
			"root": {"ops@contoso.com", "Backup@contoso.com"}, "www-data": {"web"}}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
	if tok, err := c.AppToken(); err != nil || tok != "tok-from-file" {
		t.Errorf("AppToken = %q, %v", tok, err)
	}
	if got, err := c.Qualify("WWW-DATA"); err != nil || !reflect.DeepEqual(got, []string{"web@host.contoso.com"}) {
		t.Errorf("Qualify(WWW-DATA) = %q, %v", got, err)
	}

	// The environment wins, and a token replaces a token_file.
	c, err = LoadConf(path, true, env("MAILGATE_URL", "http://127.0.0.1:8080", "MAILGATE_TOKEN", "tok-env"))
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://127.0.0.1:8080" || c.Token != "tok-env" || c.TokenFile != "" {
		t.Errorf("environment did not win: %+v", c)
	}

	// No file at the default path: the environment alone is enough.
	c, err = LoadConf(filepath.Join(t.TempDir(), "absent.conf"), false, env("MAILGATE_URL", "http://x", "MAILGATE_TOKEN_FILE", tokFile))
	if err != nil || c.TokenFile != tokFile {
		t.Errorf("environment only: %+v, %v", c, err)
	}
}

func TestLoadConfRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, content string
		explicit      bool
		getenv        func(string) string
	}{
		{"missing explicit file", "", true, env()},
		{"no url", "token = x\n", true, env()},
		{"not http", "url = smtp://relay\ntoken = x\n", true, env()},
		{"unknown key", "url = http://x\ntoken = x\nserver = y\n", true, env()},
		{"no equals sign", "url http://x\n", true, env()},
		{"token and token_file", "url = http://x\ntoken = x\ntoken_file = /t\n", true, env()},
		{"empty alias", "url = http://x\nalias root =\n", true, env()},
		{"nothing anywhere", "", false, env()},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, "absent.conf")
		if tt.content != "" {
			path = writeFile(t, "c.conf", tt.content)
		}
		_, err := LoadConf(path, tt.explicit, tt.getenv)
		var ce *ConfError
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want a ConfError", tt.name, err)
		}
	}
	if _, err := (Conf{TokenFile: filepath.Join(dir, "none")}).AppToken(); exitFor(err) != ExitConfig {
		t.Errorf("unreadable token_file: %v", err)
	}
}
