// Package token issues and verifies mailgate's per-application API tokens.
//
// A token is a JWT (RFC 7519) signed with HS256 under auth.signing_key. Its
// subject is the app id, its jti a random id that can be revoked alone, and
// its scope says whether it may submit mail ("app") or reach the operator
// endpoints ("admin"): one token never does both.
//
// Its audience (aud, RFC 7519 section 4.1.3) names the installation that
// issued it (auth.audience). Two installations that happen to share a
// signing key — a copied secret, a staging copy of production — then still
// refuse each other's tokens: the key proves who signed, the audience says
// for whom.
//
// Verification pins the algorithm to HS256 (so "alg: none" and RS/HS
// confusion are refused before any key is used), checks issuer, audience,
// expiry and not-before against an injected clock, and asks the revocation
// list, shared by every instance through Redis, whether the jti was revoked
// (revocations.go: a running instance holds the list in memory, kept
// current over Pub/Sub, and asks Redis per request only while it cannot be
// sure its copy is current). The HMAC comparison of golang-jwt is
// constant-time (crypto/hmac.Equal).
//
// Key rotation: a Manager signs with one key and verifies with it and with
// any previous keys (auth.previous_signing_keys), so tokens signed before a
// rotation keep working until the old key is removed from the file.
package token

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Scopes of a token.
const (
	ScopeApp   = "app"
	ScopeAdmin = "admin"
)

// MinKeyBytes is the shortest signing key accepted: HS256 wants at least the
// hash size (RFC 7518 §3.2).
const MinKeyBytes = 32

// Errors of Verify. Every one of them means 401 to the API.
var (
	ErrMalformed  = errors.New("token is malformed")
	ErrSignature  = errors.New("token signature is invalid (only HS256 tokens signed with this server's key are accepted)")
	ErrExpired    = errors.New("token has expired")
	ErrNotYet     = errors.New("token is not valid yet")
	ErrIssuer     = errors.New("token was issued by someone else")
	ErrAudience   = errors.New("token was issued for another mailgate installation (its audience is not this one's auth.audience)")
	ErrNoAudience = errors.New("token has no audience: it was issued before mailgate bound tokens to one installation; " +
		"issue a new one with `mailgate token issue` (the operator can accept such tokens for a while with auth.accept_tokens_without_audience)")
	ErrClaims  = errors.New("token lacks a subject, id or scope")
	ErrRevoked = errors.New("token was revoked")
)

// Claims are the claims of a mailgate token.
type Claims struct {
	Scope string `json:"scope"`
	jwt.RegisteredClaims
}

// Manager issues, verifies and revokes tokens.
type Manager struct {
	key          []byte
	previousKeys [][]byte
	issuer       string
	audience     string
	acceptNoAud  bool
	now          func() time.Time
	revoked      *Revocations
}

// Options configure a Manager.
type Options struct {
	// Key signs new tokens and verifies them.
	Key []byte
	// PreviousKeys only verify: tokens signed before a key rotation.
	PreviousKeys [][]byte
	Issuer       string
	// Audience names this installation; it is put in every token issued
	// and required in every token verified.
	Audience string
	// AcceptNoAudience lets tokens without an audience through (tokens
	// issued before audiences existed), for the time it takes to replace
	// them.
	AcceptNoAudience bool
	// Revoked is the revocation list; nil for a Manager that only issues.
	Revoked *Revocations
	Now     func() time.Time
}

// New returns a Manager.
func New(o Options) (*Manager, error) {
	if len(o.Key) < MinKeyBytes {
		return nil, fmt.Errorf("auth.signing_key must be at least %d bytes, it has %d", MinKeyBytes, len(o.Key))
	}
	for i, k := range o.PreviousKeys {
		if len(k) < MinKeyBytes {
			return nil, fmt.Errorf("auth.previous_signing_keys[%d] must be at least %d bytes, it has %d", i, MinKeyBytes, len(k))
		}
	}
	if o.Audience == "" {
		return nil, errors.New("auth.audience is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Manager{key: o.Key, previousKeys: o.PreviousKeys, issuer: o.Issuer, audience: o.Audience,
		acceptNoAud: o.AcceptNoAudience, now: o.Now, revoked: o.Revoked}, nil
}

// Audience is the audience this Manager issues and requires.
func (m *Manager) Audience() string { return m.audience }

// Issue returns a signed token for subject (an app id, or an operator name
// for admin tokens). ttl 0 means the token does not expire.
func (m *Manager) Issue(subject, scope string, ttl time.Duration) (string, *Claims, error) {
	if subject == "" || (scope != ScopeApp && scope != ScopeAdmin) {
		return "", nil, fmt.Errorf("issue token: need a subject and scope app or admin")
	}
	now := m.now().Truncate(time.Second)
	c := &Claims{Scope: scope, RegisteredClaims: jwt.RegisteredClaims{
		Issuer:   m.issuer,
		Subject:  subject,
		Audience: jwt.ClaimStrings{m.audience},
		ID:       randomID(),
		IssuedAt: jwt.NewNumericDate(now),
	}}
	if ttl > 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(m.key)
	if err != nil {
		return "", nil, fmt.Errorf("sign token: %w", err)
	}
	return s, c, nil
}

// Parse checks a token's signature, algorithm and claims, without asking
// the revocation list.
func (m *Manager) Parse(raw string) (*Claims, error) {
	c := &Claims{}
	_, err := jwt.ParseWithClaims(raw, c, m.keys,
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(m.issuer),
		jwt.WithTimeFunc(m.now),
		jwt.WithLeeway(5*time.Second),
		jwt.WithStrictDecoding(),
	)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return nil, ErrNotYet
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return nil, ErrIssuer
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, ErrSignature
	default:
		return nil, ErrMalformed
	}
	if c.Subject == "" || c.ID == "" || (c.Scope != ScopeApp && c.Scope != ScopeAdmin) {
		return nil, ErrClaims
	}
	// Checked here rather than with jwt.WithAudience, which cannot tell a
	// token for someone else from one issued before audiences existed.
	switch {
	case len(c.Audience) == 0 && m.acceptNoAud:
	case len(c.Audience) == 0:
		return nil, ErrNoAudience
	case !slices.Contains(c.Audience, m.audience):
		return nil, ErrAudience
	}
	return c, nil
}

// keys is the jwt.Keyfunc: the current key and the previous ones, tried in
// turn by golang-jwt.
func (m *Manager) keys(*jwt.Token) (any, error) {
	if len(m.previousKeys) == 0 {
		return m.key, nil
	}
	set := jwt.VerificationKeySet{Keys: []jwt.VerificationKey{m.key}}
	for _, k := range m.previousKeys {
		set.Keys = append(set.Keys, k)
	}
	return set, nil
}

// Verify parses raw and refuses it when its jti was revoked. An error that
// is none of this package's means the revocation list could not be asked;
// the caller must then refuse the request too (fail closed).
func (m *Manager) Verify(ctx context.Context, raw string) (*Claims, error) {
	c, err := m.Parse(raw)
	if err != nil {
		return nil, err
	}
	if m.revoked != nil {
		revoked, err := m.revoked.IsRevoked(ctx, c.ID)
		if err != nil {
			return nil, err
		}
		if revoked {
			return nil, ErrRevoked
		}
	}
	return c, nil
}

// IsAuthError reports whether err is a verdict on the token (401), as
// opposed to a failure to ask Redis (503).
func IsAuthError(err error) bool {
	for _, e := range []error{ErrMalformed, ErrSignature, ErrExpired, ErrNotYet, ErrIssuer, ErrAudience, ErrNoAudience, ErrClaims, ErrRevoked} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}
