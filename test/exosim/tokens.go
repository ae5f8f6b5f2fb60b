package exosim

import (
	"crypto/rand"
	"crypto/x509"
	"sync"
	"time"
)

// tokenStore is the identity side of the tenant: the app registrations the
// token endpoint knows, and the access tokens it issued. Tokens are opaque
// random strings: the SMTP side only has to recognise them, not parse them.
type tokenStore struct {
	mu     sync.Mutex
	apps   map[string]*appRegistration
	tokens map[string]issuedToken
	issued int
	// expiredUpTo is the sequence number of the last token ExpireTokens
	// invalidated.
	expiredUpTo int
}

// appRegistration is what Entra holds for one client_id.
type appRegistration struct {
	secrets []string
	certs   []*x509.Certificate
}

type issuedToken struct {
	clientID string
	expires  time.Time
	seq      int // 1 for the first token issued
}

func newTokenStore() *tokenStore {
	return &tokenStore{apps: make(map[string]*appRegistration), tokens: make(map[string]issuedToken)}
}

func (ts *tokenStore) app(clientID string) *appRegistration {
	a, ok := ts.apps[clientID]
	if !ok {
		a = &appRegistration{}
		ts.apps[clientID] = a
	}
	return a
}

func (ts *tokenStore) addSecret(clientID, secret string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	a := ts.app(clientID)
	a.secrets = append(a.secrets, secret)
}

func (ts *tokenStore) addCert(clientID string, cert *x509.Certificate) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	a := ts.app(clientID)
	a.certs = append(a.certs, cert)
}

// lookup returns a copy of the registration of clientID.
func (ts *tokenStore) lookup(clientID string) (appRegistration, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	a, ok := ts.apps[clientID]
	if !ok {
		return appRegistration{}, false
	}
	return appRegistration{secrets: append([]string(nil), a.secrets...), certs: append([]*x509.Certificate(nil), a.certs...)}, true
}

func (ts *tokenStore) issue(clientID string, now time.Time, ttl time.Duration) string {
	tok := rand.Text() + rand.Text()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.issued++
	ts.tokens[tok] = issuedToken{clientID: clientID, expires: now.Add(ttl), seq: ts.issued}
	return tok
}

// valid reports whether token was issued here and is still valid at now.
func (ts *tokenStore) valid(token string, now time.Time) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.tokens[token]
	return ok && now.Before(t.expires) && t.seq > ts.expiredUpTo
}

// expireAll invalidates every token issued so far; later ones stay valid.
func (ts *tokenStore) expireAll() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.expiredUpTo = ts.issued
}

func (ts *tokenStore) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.issued
}
