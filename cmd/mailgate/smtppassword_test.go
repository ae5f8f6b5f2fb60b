package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/smtppass"
	"github.com/mailgate/mailgate/test/redistest"
)

// issue prints the password and nothing else on stdout; revoke by password
// or by id makes it fail verification on every instance.
func TestSMTPPasswordCommands(t *testing.T) {
	srv := redistest.Start(t)
	cfg := writeConfig(t, validConfig+"redis:\n  url: "+srv.URL()+"\n")
	e := env(map[string]string{"KEY": key})
	issue := func() string {
		var out, errOut bytes.Buffer
		if code := run([]string{"smtp-password", "issue", "--config", cfg, "--app", "monitoring"}, &out, &errOut, e); code != 0 {
			t.Fatalf("issue: exit %d: %s", code, errOut.String())
		}
		pw := strings.TrimSuffix(out.String(), "\n")
		if !smtppass.IsPassword(pw) || strings.Contains(pw, "\n") {
			t.Fatalf("stdout is not just a password: %q", out.String())
		}
		return pw
	}
	byPassword, byID := issue(), issue()
	v := smtppass.NewVerifier(smtppass.New(srv.Client(), "mailgate", nil), 0)
	ctx := context.Background()
	for _, pw := range []string{byPassword, byID} {
		if app, _, err := v.Verify(ctx, pw); err != nil || app != "monitoring" {
			t.Fatalf("issued password does not verify: %q %v", app, err)
		}
	}
	id, err := smtppass.ParseID(byID)
	if err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{byPassword, id} {
		var out, errOut bytes.Buffer
		if code := run([]string{"smtp-password", "revoke", "--config", cfg, arg}, &out, &errOut, e); code != 0 || !strings.HasPrefix(out.String(), "revoked ") {
			t.Fatalf("revoke %s: exit %d, %q %q", arg, code, out.String(), errOut.String())
		}
	}
	for _, pw := range []string{byPassword, byID} {
		if _, _, err := v.Verify(ctx, pw); !errors.Is(err, smtppass.ErrUnknown) {
			t.Fatalf("a revoked password verified: %v", err)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"smtp-password", "revoke", "--config", cfg, id}, &out, &errOut, e); code != 1 {
		t.Fatalf("second revoke: exit %d, want 1 (unknown)", code)
	}
	if code := run([]string{"smtp-password", "issue", "--config", cfg, "--app", "nope"}, &out, &errOut, e); code != 1 {
		t.Fatalf("issue for an unknown app: exit %d", code)
	}
	if code := run([]string{"smtp-password", "issue", "--config", cfg}, &out, &errOut, e); code != 2 {
		t.Fatalf("issue without --app: exit %d", code)
	}
}

// Clear-text AUTH networks are allowed but named: config check warns and
// still succeeds.
func TestConfigCheckWarnsAboutClearTextAuth(t *testing.T) {
	cfg := writeConfig(t, validConfig+`    smtp:
      networks: ["10.100.102.3/32"]
      insecure_auth_networks: ["10.100.0.0/16"]
smtp:
  listen: ":2525"
`)
	var out, errOut bytes.Buffer
	code := run([]string{"config", "check", "--config", cfg}, &out, &errOut, env(map[string]string{"KEY": key}))
	if code != 0 || out.String() != "ok\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	want := "warning: apps[monitoring].smtp.insecure_auth_networks[0]: clients from 10.100.0.0/16"
	if !strings.Contains(errOut.String(), want) {
		t.Fatalf("stderr lacks %q:\n%s", want, errOut.String())
	}
}
