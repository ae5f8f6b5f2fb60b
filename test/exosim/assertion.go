package exosim

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// verifyAssertion checks an RFC 7523 client assertion the way Entra does
// (https://learn.microsoft.com/entra/identity-platform/certificate-credentials):
// signed RS256 or PS256 by a certificate registered for clientID, chosen by
// the x5t (SHA-1) or x5t#S256 header; aud is the token endpoint; iss and sub
// are clientID; exp is required. Times are checked against the real clock,
// which is what MSAL signs with.
func verifyAssertion(assertion, clientID, tokenURL string, certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return errors.New("no certificate registered for the app")
	}
	tok, err := jwt.Parse(assertion, func(t *jwt.Token) (any, error) {
		for _, c := range certs {
			if thumbprintMatches(t.Header, c) {
				return c.PublicKey, nil
			}
		}
		return nil, errors.New("x5t or x5t#S256 names no registered certificate")
	},
		jwt.WithValidMethods([]string{"RS256", "PS256"}),
		jwt.WithIssuer(clientID),
		jwt.WithSubject(clientID),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		return err
	}
	aud, err := tok.Claims.GetAudience()
	if err != nil {
		return err
	}
	// MSAL lower-cases the authority, so compare the URL without case.
	if !slices.ContainsFunc(aud, func(a string) bool { return strings.EqualFold(a, tokenURL) }) {
		return fmt.Errorf("aud %v is not the token endpoint %s", aud, tokenURL)
	}
	return nil
}

// thumbprintMatches compares the JWS x5t (SHA-1) or x5t#S256 header with the
// certificate. RFC 7515 says base64url; MSAL for Go sends standard base64,
// so both are accepted.
func thumbprintMatches(h map[string]any, c *x509.Certificate) bool {
	s1, s256 := sha1.Sum(c.Raw), sha256.Sum256(c.Raw)
	for name, sum := range map[string][]byte{"x5t": s1[:], "x5t#S256": s256[:]} {
		v, ok := h[name].(string)
		if !ok {
			continue
		}
		for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
			if v == enc.EncodeToString(sum) {
				return true
			}
		}
	}
	return false
}
