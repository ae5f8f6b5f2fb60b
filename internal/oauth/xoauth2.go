package oauth

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/wneessen/go-mail/smtp"
)

// XOAUTH2 authenticates SMTP connections with SASL XOAUTH2 and the route's
// app-only token: the initial response is
// user=<mailbox>\x01auth=Bearer <token>\x01\x01 (docs/exchange-online.md,
// "OAuth 2.0 for SMTP, app-only"). One
// token serves every mailbox of the route, since it is the app, not the
// mailbox, that holds it. XOAUTH2 satisfies delivery.Authenticator.
type XOAUTH2 struct {
	ts *TokenSource

	mu sync.Mutex
	// given is the token last handed out per mailbox (lower case), so that
	// a refusal drops that token and not one that has replaced it since.
	given map[string]string
}

// NewXOAUTH2 returns an XOAUTH2 authenticator on top of ts.
func NewXOAUTH2(ts *TokenSource) *XOAUTH2 {
	return &XOAUTH2{ts: ts, given: make(map[string]string)}
}

// Auth returns the XOAUTH2 mechanism to authenticate as mailbox. It fails
// when no token can be had; see TokenSource.Token.
func (x *XOAUTH2) Auth(ctx context.Context, mailbox string) (smtp.Auth, error) {
	// \x01 separates the fields of the initial response.
	if mailbox == "" || strings.ContainsFunc(mailbox, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, fmt.Errorf("xoauth2: want a mailbox address, got %q", mailbox)
	}
	tok, _, err := x.ts.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("xoauth2 as %s: %w", mailbox, err)
	}
	x.mu.Lock()
	x.given[strings.ToLower(mailbox)] = tok
	x.mu.Unlock()
	return smtp.XOAuth2Auth(mailbox, tok), nil
}

// Refused drops the token last handed out for mailbox, which the server
// refused (535 5.7.3), so that the next Auth gets a new one from Entra. When
// several connections are refused the same token, only the first refusal
// costs a request to Entra, as long as no new token was handed to the same
// mailbox in between.
func (x *XOAUTH2) Refused(mailbox string) {
	x.mu.Lock()
	tok, ok := x.given[strings.ToLower(mailbox)]
	x.mu.Unlock()
	if !ok {
		x.ts.Invalidate()
		return
	}
	x.ts.invalidate(tok)
}
