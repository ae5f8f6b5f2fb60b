package oauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/mailgate/mailgate/internal/config"
)

// EntraHost is the public cloud's Entra ID host.
const EntraHost = "login.microsoftonline.com"

// tokenPath ends every Entra ID v2 token endpoint.
const tokenPath = "/oauth2/v2.0/token"

// ParseTokenURL splits an Entra ID v2 token endpoint,
// https://host[:port]/<tenant>/oauth2/v2.0/token, into the MSAL authority
// (https://host[:port]/<tenant>) and the tenant. MSAL takes an authority,
// not a token URL, and finds the token endpoint through the tenant's OpenID
// configuration; it only speaks HTTPS.
func ParseTokenURL(tokenURL string) (authority, tenant string, err error) {
	bad := func(why string) error {
		return fmt.Errorf("auth.oauth.token_url: want the Entra ID v2 token endpoint of the tenant, https://host[:port]/<tenant>/oauth2/v2.0/token, got %q: %s", tokenURL, why)
	}
	u, err := url.Parse(tokenURL)
	switch {
	case err != nil:
		return "", "", bad("not a URL")
	case u.Scheme != "https":
		return "", "", bad("the scheme must be https (MSAL only talks to an authority over HTTPS)")
	case u.Host == "" || u.Hostname() == "":
		return "", "", bad("no host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", "", bad("no user info, query or fragment allowed")
	case !strings.HasSuffix(u.Path, tokenPath):
		return "", "", bad("the path must end in " + tokenPath)
	}
	tenant = strings.TrimPrefix(strings.TrimSuffix(u.Path, tokenPath), "/")
	if tenant == "" || strings.Contains(tenant, "/") {
		return "", "", bad("the path must be /<tenant>" + tokenPath + ", with the tenant as its only segment before it")
	}
	return "https://" + u.Host + "/" + tenant, tenant, nil
}

// authorityOf is the MSAL authority of o: from token_url when set, else the
// public cloud's authority of tenant_id.
func authorityOf(o *config.OAuth) (authority, tenant string, err error) {
	if o.TokenURL == "" {
		if o.TenantID == "" {
			return "", "", errors.New("auth.oauth.tenant_id: required (unless token_url is set), the directory (tenant) ID or a verified domain of the tenant")
		}
		if strings.ContainsAny(o.TenantID, "/?#% \t\r\n") {
			return "", "", fmt.Errorf("auth.oauth.tenant_id: want a tenant ID or domain, got %q", o.TenantID)
		}
		return "https://" + EntraHost + "/" + o.TenantID, o.TenantID, nil
	}
	authority, tenant, err = ParseTokenURL(o.TokenURL)
	if err != nil {
		return "", "", err
	}
	if o.TenantID != "" && !strings.EqualFold(o.TenantID, tenant) {
		return "", "", fmt.Errorf("auth.oauth.token_url: names tenant %q but tenant_id is %q; make them agree or leave tenant_id empty", tenant, o.TenantID)
	}
	return authority, tenant, nil
}

// credential is the MSAL credential of o and the configuration key to point
// at when Entra refuses it.
func credential(o *config.OAuth) (confidential.Credential, string, error) {
	secret := o.ClientSecret != "" || o.ClientSecretFile != ""
	cert := o.ClientCertificateFile != "" || o.ClientKeyFile != ""
	switch {
	case secret && cert:
		return confidential.Credential{}, "", errors.New("auth.oauth.client_secret: set either client_secret or client_certificate_file and client_key_file, not both")
	case o.ClientSecret != "":
		c, err := confidential.NewCredFromSecret(o.ClientSecret)
		return c, "client_secret", err
	case o.ClientSecretFile != "":
		return confidential.Credential{}, "", errors.New("auth.oauth.client_secret_file: not read yet; load the configuration with config.Load, which reads it into client_secret")
	case !cert:
		return confidential.Credential{}, "", errors.New("auth.oauth.client_secret: required, or client_certificate_file and client_key_file")
	case o.ClientCertificateFile == "" || o.ClientKeyFile == "":
		return confidential.Credential{}, "", errors.New("auth.oauth.client_certificate_file: client_certificate_file and client_key_file go together")
	}
	var pemData []byte
	for _, f := range []struct{ key, name string }{
		{"client_certificate_file", o.ClientCertificateFile},
		{"client_key_file", o.ClientKeyFile},
	} {
		b, err := os.ReadFile(f.name)
		if err != nil {
			return confidential.Credential{}, "", fmt.Errorf("auth.oauth.%s: %w", f.key, err)
		}
		pemData = append(append(pemData, b...), '\n')
	}
	certs, key, err := confidential.CertFromPEM(pemData, "")
	if err != nil {
		return confidential.Credential{}, "", fmt.Errorf("auth.oauth.client_certificate_file: read %s and %s: %w (want PEM: a CERTIFICATE and an unencrypted PRIVATE KEY or RSA PRIVATE KEY)", o.ClientCertificateFile, o.ClientKeyFile, err)
	}
	c, err := confidential.NewCredFromCert(certs, key)
	if err != nil {
		// Entra signs client assertions only with RSA (RS256 or PS256).
		return confidential.Credential{}, "", fmt.Errorf("auth.oauth.client_key_file: %s with %s: %w (Entra ID needs an RSA key that belongs to the certificate)", o.ClientKeyFile, o.ClientCertificateFile, err)
	}
	return c, "client_certificate_file", nil
}

// httpClient trusts the system's roots and those in caFile.
func httpClient(caFile string) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pemData, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("tls.ca_file: no PEM certificate in %s", caFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	return &http.Client{Transport: tr, Timeout: fetchTimeout}, nil
}
