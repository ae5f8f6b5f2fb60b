package routecheck_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/routecheck"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/testpki"
)

func setup(t *testing.T) (*exosim.Sim, *config.Config) {
	t.Helper()
	sim := exosim.Start(t, exosim.Options{Mailboxes: map[string]string{"relay@contoso.com": "pw"}})
	cfg := &config.Config{
		Auth: config.Auth{SigningKey: "0123456789abcdef0123456789abcdef"},
		Routes: []config.Route{{Name: "m365", Type: config.RouteSMTPAuth, Host: sim.Host(), Port: sim.Port(),
			TLS:  config.RouteTLS{Mode: config.TLSStartTLS, CAFile: sim.CAFile()},
			Auth: config.RouteAuth{Mechanism: config.MechLogin, Username: "relay@contoso.com", Password: "pw"}}},
		Apps: []config.App{{ID: "a", Route: "m365", From: config.AppFrom{Default: "relay@contoso.com"}}},
	}
	cfg.WithDefaults()
	return sim, cfg
}

func TestCheckPassesAndSendsTest(t *testing.T) {
	t.Parallel()
	sim, cfg := setup(t)
	var out bytes.Buffer
	if ok := routecheck.Run(context.Background(), cfg, &cfg.Routes[0], "ops@contoso.com", &out, routecheck.Options{}); !ok {
		t.Fatalf("check failed:\n%s", out.String())
	}
	for _, want := range []string{"✓ connect", "✓ starttls", "certificate verified: true", "✓ auth", "authenticated as relay@contoso.com", "✓ send", "250"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	msgs := sim.Messages()
	if len(msgs) != 1 || msgs[0].Rcpt[0] != "ops@contoso.com" || !bytes.Contains(msgs[0].Data, []byte("mailgate route check")) {
		t.Fatalf("test message: %+v", msgs)
	}
}

func TestCheckExplainsFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		breakIt func(*exosim.Sim, *config.Config)
		want    []string
	}{
		{"SMTP AUTH disabled", func(s *exosim.Sim, _ *config.Config) { s.SetSMTPAuthDisabled("", true) },
			[]string{"✗ auth", "535 5.7.139", "fix:", "Set-CASMailbox"}},
		{"basic auth off", func(s *exosim.Sim, _ *config.Config) { s.SetBasicAuthDisabled(true) },
			[]string{"✗ auth", "5.7.30", "xoauth2"}},
		{"wrong password", func(_ *exosim.Sim, c *config.Config) { c.Routes[0].Auth.Password = "nope" },
			[]string{"✗ auth", "535 5.7.3"}},
		{"untrusted certificate", func(_ *exosim.Sim, c *config.Config) {
			// A CA that signed nothing the simulator uses.
			dir := t.TempDir()
			c.Routes[0].TLS.CAFile = filepath.Join(dir, "other-ca.pem")
			testpki.WriteSelfSigned(t, c.Routes[0].TLS.CAFile, filepath.Join(dir, "other-ca.key"), "other CA")
		}, []string{"✗ starttls", "tls.ca_file"}},
		{"nothing listening", func(_ *exosim.Sim, c *config.Config) { c.Routes[0].Port = closedPort(t) },
			[]string{"✗ connect", "nothing listens"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim, cfg := setup(t)
			tc.breakIt(sim, cfg)
			var out bytes.Buffer
			if ok := routecheck.Run(context.Background(), cfg, &cfg.Routes[0], "", &out, routecheck.Options{}); ok {
				t.Fatalf("check passed:\n%s", out.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestCheckXOAUTH2ShowsTheTokenStep(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{"right-secret", "wrong-secret"} {
		sim, cfg := setup(t)
		sim.RegisterClientSecret("check-client", "right-secret")
		r := &cfg.Routes[0]
		r.Auth = config.RouteAuth{Mechanism: config.MechXOAUTH2, Username: "relay@contoso.com", OAuth: config.OAuth{
			TenantID: sim.TenantID(), ClientID: "check-client", ClientSecret: secret, TokenURL: sim.TokenURL(),
			Scope: config.Office365Scope}}
		var out bytes.Buffer
		ok := routecheck.Run(context.Background(), cfg, r, "", &out, routecheck.Options{})
		if secret == "right-secret" {
			if !ok || !strings.Contains(out.String(), "✓ token") || !strings.Contains(out.String(), "✓ auth") {
				t.Fatalf("check with the right secret:\n%s", out.String())
			}
			continue
		}
		if ok || !strings.Contains(out.String(), "✗ token") || strings.Contains(out.String(), "wrong-secret") {
			t.Fatalf("check with a wrong secret (must fail at the token step, never print the secret):\n%s", out.String())
		}
	}
}
