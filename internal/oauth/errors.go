package oauth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"
)

// Error is Entra ID's refusal to issue a token, or an answer from the token
// endpoint that is not a token. Its message says what to check; it holds
// neither the client secret nor a token.
type Error struct {
	TenantID string
	ClientID string
	// Status is the HTTP status of the answer.
	Status int
	// Code is the OAuth 2.0 error (RFC 6749 section 5.2), such as
	// invalid_client; empty when the body was not Entra's JSON.
	Code string
	// AADSTS is Entra's own error code, such as 7000215 for a wrong client
	// secret; 0 when absent.
	AADSTS int
	// Description is Entra's error_description without its trace and
	// correlation IDs and timestamp, which are in the fields below.
	Description   string
	TraceID       string
	CorrelationID string
	// Hint says what to check, naming the configuration key.
	Hint string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.summary())
	b.WriteString(":")
	if e.AADSTS != 0 {
		fmt.Fprintf(&b, " AADSTS%d", e.AADSTS)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	} else {
		fmt.Fprintf(&b, " HTTP %d", e.Status)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %s", e.Description)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, " — %s", e.Hint)
	}
	if e.CorrelationID != "" {
		fmt.Fprintf(&b, " (correlation ID %s)", e.CorrelationID)
	}
	return b.String()
}

// Temporary reports whether asking again later may succeed: Entra was busy
// or failed, as opposed to refusing the configuration.
func (e *Error) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Code == "temporarily_unavailable"
}

func (e *Error) summary() string {
	who := fmt.Sprintf("client_id %s in tenant %s", e.ClientID, e.TenantID)
	switch {
	case e.Temporary():
		return "Entra ID could not issue a token for " + who + " just now"
	case e.Code == "invalid_tenant" || e.AADSTS == 90002 || e.AADSTS == 900023:
		return "Entra ID does not know tenant " + e.TenantID
	case e.Code == "invalid_client":
		return "Entra ID refused the client credentials for " + who
	case e.Code == "unauthorized_client":
		return "Entra ID does not accept " + who
	case e.Code == "invalid_scope":
		return "Entra ID refused the scope requested for " + who
	default:
		return "Entra ID refused a token for " + who
	}
}

// hints say what to check for Entra's error codes
// (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
var hints = map[int]string{
	7000215: "check routes[].auth.oauth.client_secret: it must be the secret's Value, not its Secret ID (expired secrets are a common cause)",
	7000222: "the client secret has expired: add a new one to the app registration and put it in routes[].auth.oauth.client_secret",
	7000218: "no client credential was sent: set routes[].auth.oauth.client_secret, or client_certificate_file and client_key_file",
	700016:  "check routes[].auth.oauth.client_id and tenant_id: the app must be registered in this tenant, or consented to by it",
	90002:   "check routes[].auth.oauth.tenant_id (or the tenant in token_url): the directory (tenant) ID or a verified domain of the tenant",
	900023:  "check routes[].auth.oauth.tenant_id (or the tenant in token_url): the directory (tenant) ID or a verified domain of the tenant",
	700027:  "the client assertion was not accepted: upload the certificate of routes[].auth.oauth.client_certificate_file to the app registration (Certificates & secrets) and check that client_key_file is its key",
	700024:  "the client assertion is outside its valid time range: check this host's clock",
	7000112: "the application is disabled in the tenant: an administrator must enable it",
	7000229: "the application has no service principal in the tenant: an administrator must consent to it",
	1002012: "check routes[].auth.oauth.scope: app-only SMTP AUTH needs https://outlook.office365.com/.default",
	70011:   "check routes[].auth.oauth.scope: app-only SMTP AUTH needs https://outlook.office365.com/.default",
	500011:  "check routes[].auth.oauth.scope and tenant_id: the resource (Exchange Online) is not in the tenant",
	53003:   "the tenant's Conditional Access policies block this app",
}

// entraBody is Entra's error answer.
type entraBody struct {
	Error         string `json:"error"`
	Description   string `json:"error_description"`
	Codes         []int  `json:"error_codes"`
	TraceID       string `json:"trace_id"`
	CorrelationID string `json:"correlation_id"`
}

// explain turns what MSAL returned into an *Error when Entra answered, or
// wraps it with what was being done otherwise.
func (s *TokenSource) explain(err error) error {
	var ce msalerrors.CallErr
	if errors.As(err, &ce) && ce.Resp != nil {
		return s.entraError(ce.Resp)
	}
	msg := fmt.Sprintf("get a token for client_id %s in tenant %s from %s", s.clientID, s.tenant, s.authority)
	var unknownCA x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknownCA) || errors.As(err, &verify) {
		msg += " (the token endpoint's certificate is not trusted; for a private endpoint give its CA in routes[].tls.ca_file)"
	}
	return fmt.Errorf("%s: %w", msg, err)
}

func (s *TokenSource) entraError(resp *http.Response) *Error {
	e := &Error{TenantID: s.tenant, ClientID: s.clientID, Status: resp.StatusCode}
	var raw []byte
	if resp.Body != nil {
		raw, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	}
	var body entraBody
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		e.Code, e.TraceID, e.CorrelationID = body.Error, body.TraceID, body.CorrelationID
		if len(body.Codes) > 0 {
			e.AADSTS = body.Codes[0]
		}
		e.Description = trimDescription(body.Description)
	} else {
		// Not Entra's JSON: a proxy or load balancer answered.
		e.Description = strings.TrimSpace(string(raw))
		if len(e.Description) > 200 {
			e.Description = e.Description[:200] + "…"
		}
	}
	if s.secret != "" {
		e.Description = strings.ReplaceAll(e.Description, s.secret, "[redacted]")
	}
	e.Hint = hints[e.AADSTS]
	if e.Hint == "" && e.Code == "invalid_client" {
		e.Hint = "check routes[].auth.oauth." + s.credKey
	}
	return e
}

// trimDescription drops the AADSTS prefix, which Error prints on its own,
// and the trace ID, correlation ID and timestamp Entra appends.
func trimDescription(d string) string {
	if code, rest, ok := strings.Cut(d, ": "); ok && strings.HasPrefix(code, "AADSTS") {
		d = rest
	}
	if i := strings.Index(d, " Trace ID:"); i >= 0 {
		d = d[:i]
	}
	return strings.TrimSpace(d)
}
