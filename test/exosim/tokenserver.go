package exosim

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// OutlookScope is the only scope the token endpoint grants: app-only access
// to Exchange Online, which SMTP AUTH with XOAUTH2 requires.
const OutlookScope = "https://outlook.office365.com/.default"

// clientAssertionType is RFC 7523's client authentication by JWT.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// tokenServer is the Entra ID v2 endpoint of one tenant, over HTTPS with the
// simulator's certificate because MSAL only accepts https authorities.
type tokenServer struct {
	sim  *Sim
	base string // https://127.0.0.1:port, known before the server starts
}

func (s *Sim) startTokenServer() *httptest.Server {
	ts := &tokenServer{sim: s}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", ts.openIDConfiguration)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", ts.token)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.logf("token endpoint: unexpected %s %s", r.Method, r.URL.Path)
		entraError(w, http.StatusNotFound, "invalid_request", 90002, "no such endpoint in the simulator: "+r.URL.Path)
	})
	web := httptest.NewUnstartedServer(mux)
	web.TLS = &tls.Config{Certificates: []tls.Certificate{s.pki.server}, MinVersion: tls.VersionTLS12}
	ts.base = "https://" + web.Listener.Addr().String()
	web.StartTLS()
	return web
}

// TenantID is the tenant in the token endpoint's paths.
func (s *Sim) TenantID() string { return s.opt.TenantID }

// Authority is the URL to give MSAL as authority, the counterpart of
// https://login.microsoftonline.com/{tenant}.
func (s *Sim) Authority() string { return s.web.URL + "/" + s.opt.TenantID }

// TokenURL is the token endpoint, the counterpart of
// https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token.
func (s *Sim) TokenURL() string { return s.Authority() + "/oauth2/v2.0/token" }

// HTTPClient trusts the simulator's CA, for MSAL's WithHTTPClient.
func (s *Sim) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12}},
		Timeout:   30 * time.Second,
	}
}

// RegisterClientSecret lets clientID get tokens with this client secret.
func (s *Sim) RegisterClientSecret(clientID, secret string) { s.tokens.addSecret(clientID, secret) }

// RegisterClientCert makes a self-signed RSA certificate for clientID, as
// uploaded to an Entra app registration, and returns it and its PKCS #8 key
// as PEM files. Client assertions signed with the key are accepted.
func (s *Sim) RegisterClientCert(tb testing.TB, clientID string) (certFile, keyFile string) {
	tb.Helper()
	cert, certFile, keyFile, err := s.pki.appCert(clientID)
	if err != nil {
		tb.Fatalf("exosim: app certificate: %v", err)
	}
	s.tokens.addCert(clientID, cert)
	return certFile, keyFile
}

// ExpireTokens makes every token issued so far invalid for XOAUTH2 at once,
// as if they had all expired; later tokens are valid again.
func (s *Sim) ExpireTokens() { s.tokens.expireAll() }

// TokensIssued is the number of access tokens the endpoint issued.
func (s *Sim) TokensIssued() int { return s.tokens.count() }

func (ts *tokenServer) tenantOK(w http.ResponseWriter, r *http.Request) (string, bool) {
	tenant := r.PathValue("tenant")
	if !strings.EqualFold(tenant, ts.sim.opt.TenantID) {
		entraError(w, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found.", tenant))
		return "", false
	}
	return tenant, true
}

// openIDConfiguration is the tenant discovery document MSAL reads before it
// asks for a token. MSAL needs authorization_endpoint, token_endpoint and an
// issuer on the authority's host.
func (ts *tokenServer) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	tenant, ok := ts.tenantOK(w, r)
	if !ok {
		return
	}
	root := ts.base + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                root + "/v2.0",
		"authorization_endpoint":                root + "/oauth2/v2.0/authorize",
		"token_endpoint":                        root + "/oauth2/v2.0/token",
		"jwks_uri":                              ts.base + "/" + tenant + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
	})
}

// token is the client-credentials grant. Errors follow Entra's answers
// (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
func (ts *tokenServer) token(w http.ResponseWriter, r *http.Request) {
	if _, ok := ts.tenantOK(w, r); !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must be a form: "+err.Error())
		return
	}
	f := r.PostForm
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		entraError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt))
		return
	}
	clientID := f.Get("client_id")
	app, ok := ts.sim.tokens.lookup(clientID)
	if !ok {
		entraError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, ts.sim.opt.TenantID))
		return
	}
	if !scopeOK(f.Get("scope")) {
		entraError(w, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", f.Get("scope")))
		return
	}
	switch {
	case f.Has("client_secret"):
		if !slices.Contains(app.secrets, f.Get("client_secret")) {
			entraError(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+clientID+"'.")
			return
		}
	case f.Has("client_assertion"):
		if f.Get("client_assertion_type") != clientAssertionType {
			entraError(w, http.StatusBadRequest, "invalid_request", 7000211, "The client_assertion_type must be '"+clientAssertionType+"'.")
			return
		}
		if err := verifyAssertion(f.Get("client_assertion"), clientID, ts.base+r.URL.Path, app.certs); err != nil {
			ts.sim.logf("token endpoint: client assertion of %s refused: %v", clientID, err)
			entraError(w, http.StatusUnauthorized, "invalid_client", 700027, "Client assertion failed signature validation: "+err.Error())
			return
		}
	default:
		entraError(w, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	ttl := ts.sim.opt.TokenTTL
	tok := ts.sim.tokens.issue(clientID, ts.sim.opt.Now(), ttl)
	secs := int(ttl / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   tok,
	})
}

// scopeOK accepts exactly the Exchange Online .default scope, plus the OIDC
// scopes MSAL always adds (openid offline_access profile), which Entra
// ignores for client credentials.
func scopeOK(scope string) bool {
	var rest []string
	for _, s := range strings.Fields(scope) {
		switch s {
		case "openid", "offline_access", "profile":
		default:
			rest = append(rest, s)
		}
	}
	return len(rest) == 1 && strings.EqualFold(rest[0], OutlookScope)
}

// entraError writes an error body shaped like Entra's.
func entraError(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	now := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: 00000000-0000-0000-0000-000000000000 Correlation ID: 00000000-0000-0000-0000-000000000000 Timestamp: %s", aadsts, desc, now),
		"error_codes":       []int{aadsts},
		"timestamp":         now,
		"trace_id":          "00000000-0000-0000-0000-000000000000",
		"correlation_id":    "00000000-0000-0000-0000-000000000000",
		"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
