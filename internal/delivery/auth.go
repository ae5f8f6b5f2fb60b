package delivery

import (
	"context"
	"fmt"

	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/oauth"
)

// Authenticator gives the SASL mechanism to authenticate as a mailbox.
type Authenticator interface {
	// Auth returns the mechanism for one AUTH exchange as mailbox.
	Auth(ctx context.Context, mailbox string) (smtp.Auth, error)
	// Refused tells the authenticator that the server refused the last
	// credentials for mailbox, so a cached token is fetched anew.
	Refused(mailbox string)
}

// passwordAuth is LOGIN or PLAIN with a fixed user name and password.
type passwordAuth struct {
	mechanism, username, password, host string
}

// NewPasswordAuth returns an Authenticator for AUTH LOGIN or PLAIN. The
// credentials are only ever sent over TLS (go-mail refuses otherwise, except
// to localhost).
func NewPasswordAuth(mechanism, username, password, host string) Authenticator {
	return &passwordAuth{mechanism: mechanism, username: username, password: password, host: host}
}

func (a *passwordAuth) Auth(context.Context, string) (smtp.Auth, error) {
	if a.mechanism == "plain" {
		return smtp.PlainAuth("", a.username, a.password, a.host, false), nil
	}
	return smtp.LoginAuth(a.username, a.password, a.host, false), nil
}

func (a *passwordAuth) Refused(string) {}

// AuthenticatorFor picks the AUTH mechanism of a route: nil for routes
// without AUTH (connectors, open relays).
func AuthenticatorFor(r *config.Route) (Authenticator, error) {
	return AuthenticatorWith(r, nil)
}

// AuthenticatorWith is AuthenticatorFor with tokenRequested, when not nil,
// told the result of every token request to Entra ID of an XOAUTH2 route
// (see oauth.Options.Requested).
func AuthenticatorWith(r *config.Route, tokenRequested func(error)) (Authenticator, error) {
	switch r.Auth.Mechanism {
	case "":
		return nil, nil
	case config.MechLogin, config.MechPlain:
		return NewPasswordAuth(r.Auth.Mechanism, r.Auth.Username, r.Auth.Password, r.Host), nil
	case config.MechXOAUTH2:
		// One token source per route: every connection of the route shares
		// its cached token. The route's tls.ca_file also vouches for the
		// token endpoint (tests and private authorities).
		ts, err := oauth.NewTokenSource(&r.Auth.OAuth, oauth.Options{CAFile: r.TLS.CAFile, Requested: tokenRequested})
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", r.Name, err)
		}
		return oauth.NewXOAUTH2(ts), nil
	default:
		return nil, fmt.Errorf("route %s: auth.mechanism %s is not supported", r.Name, r.Auth.Mechanism)
	}
}
