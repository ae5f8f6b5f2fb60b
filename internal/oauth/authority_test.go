package oauth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/oauth"
)

func TestParseTokenURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url, authority, tenant, err string
	}{
		{"https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token", "https://login.microsoftonline.com/contoso.onmicrosoft.com", "contoso.onmicrosoft.com", ""},
		{"https://127.0.0.1:8443/5f3c0e4a-7b1d-4c2e-9a8f-0e1d2c3b4a59/oauth2/v2.0/token", "https://127.0.0.1:8443/5f3c0e4a-7b1d-4c2e-9a8f-0e1d2c3b4a59", "5f3c0e4a-7b1d-4c2e-9a8f-0e1d2c3b4a59", ""},
		{"https://login.microsoftonline.us/t/oauth2/v2.0/token", "https://login.microsoftonline.us/t", "t", ""},
		{"http://127.0.0.1:8080/t/oauth2/v2.0/token", "", "", "scheme must be https"},
		{"https:///t/oauth2/v2.0/token", "", "", "no host"},
		{"https://login.microsoftonline.com/t/oauth2/token", "", "", "must end in /oauth2/v2.0/token"},
		{"https://login.microsoftonline.com/oauth2/v2.0/token", "", "", "tenant as its only segment"},
		{"https://proxy.example/entra/t/oauth2/v2.0/token", "", "", "tenant as its only segment"},
		{"https://login.microsoftonline.com/t/oauth2/v2.0/token?x=1", "", "", "no user info, query or fragment"},
		{"https://user:pw@login.microsoftonline.com/t/oauth2/v2.0/token", "", "", "no user info, query or fragment"},
		{"login.microsoftonline.com/t/oauth2/v2.0/token", "", "", "scheme must be https"},
		{"https://[::1/t/oauth2/v2.0/token", "", "", "not a URL"},
	}
	for _, tt := range tests {
		authority, tenant, err := oauth.ParseTokenURL(tt.url)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.url, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.url, err, tt.err)
		case tt.err != "" && !strings.Contains(err.Error(), "auth.oauth.token_url"):
			t.Errorf("%s: error %v does not name the key", tt.url, err)
		case authority != tt.authority || tenant != tt.tenant:
			t.Errorf("%s: authority %q tenant %q, want %q %q", tt.url, authority, tenant, tt.authority, tt.tenant)
		}
	}
}

func TestNewTokenSource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := config.OAuth{TenantID: "contoso.onmicrosoft.com", ClientID: "app", ClientSecret: "Zq9~not-to-be-shown"}
	with := func(mod func(*config.OAuth)) config.OAuth {
		o := ok
		mod(&o)
		return o
	}
	tests := []struct {
		name      string
		oauth     config.OAuth
		opts      oauth.Options
		authority string // when no error
		err       string
	}{
		{"default authority", ok, oauth.Options{}, "https://login.microsoftonline.com/contoso.onmicrosoft.com", ""},
		{"token_url", with(func(o *config.OAuth) {
			o.TenantID, o.TokenURL = "", "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
		}), oauth.Options{}, "https://login.microsoftonline.us/contoso.onmicrosoft.com", ""},
		{"token_url and tenant_id agree", with(func(o *config.OAuth) {
			o.TokenURL = "https://login.microsoftonline.com/Contoso.onmicrosoft.com/oauth2/v2.0/token"
		}), oauth.Options{}, "https://login.microsoftonline.com/Contoso.onmicrosoft.com", ""},
		{"token_url names another tenant", with(func(o *config.OAuth) {
			o.TokenURL = "https://login.microsoftonline.com/fabrikam.com/oauth2/v2.0/token"
		}), oauth.Options{}, "", `auth.oauth.token_url: names tenant "fabrikam.com" but tenant_id is "contoso.onmicrosoft.com"`},
		{"http token_url", with(func(o *config.OAuth) { o.TokenURL = "http://127.0.0.1/t/oauth2/v2.0/token" }), oauth.Options{}, "", "auth.oauth.token_url"},
		{"no tenant", with(func(o *config.OAuth) { o.TenantID = "" }), oauth.Options{}, "", "auth.oauth.tenant_id: required"},
		{"bad tenant", with(func(o *config.OAuth) { o.TenantID = "a/b" }), oauth.Options{}, "", "auth.oauth.tenant_id: want a tenant ID"},
		{"no client_id", with(func(o *config.OAuth) { o.ClientID = "" }), oauth.Options{}, "", "auth.oauth.client_id: required"},
		{"no credential", with(func(o *config.OAuth) { o.ClientSecret = "" }), oauth.Options{}, "", "auth.oauth.client_secret: required"},
		{"secret and certificate", with(func(o *config.OAuth) { o.ClientCertificateFile = "c.pem" }), oauth.Options{}, "", "not both"},
		{"unread secret file", with(func(o *config.OAuth) { o.ClientSecret, o.ClientSecretFile = "", "/run/secrets/x" }), oauth.Options{}, "", "config.Load"},
		{"certificate without key", with(func(o *config.OAuth) { o.ClientSecret, o.ClientCertificateFile = "", notPEM }), oauth.Options{}, "", "go together"},
		{"missing certificate", with(func(o *config.OAuth) {
			o.ClientSecret, o.ClientCertificateFile, o.ClientKeyFile = "", filepath.Join(dir, "nope.pem"), notPEM
		}), oauth.Options{}, "", "auth.oauth.client_certificate_file"},
		{"certificate not PEM", with(func(o *config.OAuth) { o.ClientSecret, o.ClientCertificateFile, o.ClientKeyFile = "", notPEM, notPEM }), oauth.Options{}, "", "want PEM"},
		{"missing CA file", ok, oauth.Options{CAFile: filepath.Join(dir, "nope.pem")}, "", "tls.ca_file"},
		{"CA file not PEM", ok, oauth.Options{CAFile: notPEM}, "", "tls.ca_file: no PEM certificate"},
		{"negative RefreshBefore", ok, oauth.Options{RefreshBefore: -1}, "", "RefreshBefore"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts, err := oauth.NewTokenSource(&tt.oauth, tt.opts)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "Zq9~not-to-be-shown") {
					t.Errorf("error %v shows the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ts.Authority() != tt.authority {
				t.Errorf("Authority() = %s, want %s", ts.Authority(), tt.authority)
			}
		})
	}
}
