package exosim_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/test/exosim"
)

// msalClient is configured the way mailgate must configure MSAL for the
// simulator: the simulator's authority, no instance discovery (which would
// ask login.microsoftonline.com about 127.0.0.1), and an HTTP client that
// trusts the simulator's CA.
func msalClient(t *testing.T, sim *exosim.Sim, clientID string, cred confidential.Credential) confidential.Client {
	t.Helper()
	c, err := confidential.New(sim.Authority(), clientID, cred,
		confidential.WithInstanceDiscovery(false),
		confidential.WithHTTPClient(sim.HTTPClient()),
	)
	if err != nil {
		t.Fatalf("confidential.New: %v", err)
	}
	return c
}

// certCredential loads a certificate and key the way mailgate's
// client_certificate_file and client_key_file would be.
func certCredential(t *testing.T, certFile, keyFile string) confidential.Credential {
	t.Helper()
	var pemData []byte
	for _, f := range []string{certFile, keyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pemData = append(pemData, b...)
	}
	certs, key, err := confidential.CertFromPEM(pemData, "")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := confidential.NewCredFromCert(certs, key)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func TestMSALThenXOAuth2(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	sim.RegisterClientSecret(appID, appSecret)
	const certAppID = "cert-app-0000-0000-000000000001"
	certFile, keyFile := sim.RegisterClientCert(t, certAppID)

	secretCred, err := confidential.NewCredFromSecret(appSecret)
	if err != nil {
		t.Fatal(err)
	}
	creds := map[string]struct {
		clientID string
		cred     confidential.Credential
	}{
		"secret":      {appID, secretCred},
		"certificate": {certAppID, certCredential(t, certFile, keyFile)},
	}
	for name, tc := range creds {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			client := msalClient(t, sim, tc.clientID, tc.cred)
			res, err := client.AcquireTokenByCredential(ctx, []string{exosim.OutlookScope})
			if err != nil {
				t.Fatalf("AcquireTokenByCredential: %v", err)
			}
			if left := time.Until(res.ExpiresOn); left < 55*time.Minute || left > 61*time.Minute {
				t.Errorf("ExpiresOn in %v, want about an hour", left)
			}

			c := sim.DialTLS(t)
			if err := c.Auth(smtp.XOAuth2Auth(relay, res.AccessToken)); err != nil {
				t.Fatalf("XOAUTH2: %v", err)
			}
			if err := send(c, relay, []string{"ops@contoso.com"}, message(relay)); err != nil {
				t.Fatal(err)
			}

			// MSAL serves the second call from its cache.
			before := sim.TokensIssued()
			again, err := client.AcquireTokenByCredential(ctx, []string{exosim.OutlookScope})
			if err != nil || again.AccessToken != res.AccessToken || sim.TokensIssued() != before {
				t.Errorf("second call: err %v, same token %v, issued %d -> %d", err, again.AccessToken == res.AccessToken, before, sim.TokensIssued())
			}
		})
	}
	sim.WaitForMessages(t, 2, waitLong)
}

func TestMSALShortTTLFetchesEveryTime(t *testing.T) {
	t.Parallel()
	opt := submissionOptions()
	opt.TokenTTL = 2 * time.Minute // under MSAL's five-minute refresh margin
	sim := exosim.Start(t, opt)
	sim.RegisterClientSecret(appID, appSecret)
	cred, err := confidential.NewCredFromSecret(appSecret)
	if err != nil {
		t.Fatal(err)
	}
	client := msalClient(t, sim, appID, cred)
	for range 3 {
		if _, err := client.AcquireTokenByCredential(context.Background(), []string{exosim.OutlookScope}); err != nil {
			t.Fatal(err)
		}
	}
	if n := sim.TokensIssued(); n != 3 {
		t.Errorf("TokensIssued = %d, want 3", n)
	}
}

func TestMSALRefused(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	sim.RegisterClientSecret(appID, appSecret)
	otherCert, otherKey := sim.RegisterClientCert(t, "another-app")

	wrongSecret, err := confidential.NewCredFromSecret("not-the-secret")
	if err != nil {
		t.Fatal(err)
	}
	_, err = msalClient(t, sim, appID, wrongSecret).AcquireTokenByCredential(context.Background(), []string{exosim.OutlookScope})
	if err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("wrong secret: %v", err)
	}
	// A certificate registered for another app does not sign for this one.
	_, err = msalClient(t, sim, appID, certCredential(t, otherCert, otherKey)).AcquireTokenByCredential(context.Background(), []string{exosim.OutlookScope})
	if err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("foreign certificate: %v", err)
	}
	if n := sim.TokensIssued(); n != 0 {
		t.Errorf("TokensIssued = %d", n)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	sim.RegisterClientSecret(appID, appSecret)
	otherTenant := strings.Replace(sim.TokenURL(), sim.TenantID(), "other-tenant", 1)
	// with changes secretForm: pairs of key and value, an empty value deletes.
	with := func(kv ...string) url.Values {
		f := secretForm()
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	tests := []struct {
		name    string
		url     string
		form    url.Values
		status  int
		errCode string
		aadsts  string
	}{
		{"wrong secret", sim.TokenURL(), with("client_secret", "nope"), http.StatusUnauthorized, "invalid_client", "AADSTS7000215"},
		{"no credential", sim.TokenURL(), with("client_secret", ""), http.StatusUnauthorized, "invalid_client", "AADSTS7000218"},
		{"unknown app", sim.TokenURL(), with("client_id", "unknown"), http.StatusBadRequest, "unauthorized_client", "AADSTS700016"},
		{"graph scope", sim.TokenURL(), with("scope", "https://graph.microsoft.com/.default"), http.StatusBadRequest, "invalid_scope", "AADSTS1002012"},
		{"delegated scope", sim.TokenURL(), with("scope", "https://outlook.office365.com/SMTP.Send"), http.StatusBadRequest, "invalid_scope", "AADSTS1002012"},
		{"password grant", sim.TokenURL(), with("grant_type", "password"), http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003"},
		{"other tenant", otherTenant, secretForm(), http.StatusBadRequest, "invalid_tenant", "AADSTS90002"},
		{"assertion type", sim.TokenURL(), with("client_secret", "", "client_assertion", "x.y.z"), http.StatusBadRequest, "invalid_request", "AADSTS7000211"},
		{"garbage assertion", sim.TokenURL(), with("client_secret", "", "client_assertion", "x.y.z", "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), http.StatusUnauthorized, "invalid_client", "AADSTS700027"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := requestToken(t, sim, tt.url, tt.form)
			desc, _ := body["error_description"].(string)
			if status != tt.status || body["error"] != tt.errCode || !strings.HasPrefix(desc, tt.aadsts+":") {
				t.Errorf("got %d %v", status, body)
			}
		})
	}
	if n := sim.TokensIssued(); n != 0 {
		t.Errorf("TokensIssued = %d", n)
	}
}
