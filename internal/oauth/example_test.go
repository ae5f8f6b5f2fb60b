package oauth_test

import (
	"context"
	"log"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/oauth"
)

// A route's XOAUTH2 authenticator: one token source per route, shared by
// all its connections, with the route's tls.ca_file trusted for token_url.
func ExampleNewXOAUTH2() {
	route := config.Route{
		Name: "m365",
		Auth: config.RouteAuth{
			Mechanism: config.MechXOAUTH2,
			Username:  "relay@contoso.com",
			OAuth: config.OAuth{
				TenantID:     "contoso.onmicrosoft.com",
				ClientID:     "00000000-0000-0000-0000-000000000001",
				ClientSecret: "from client_secret or client_secret_file",
			},
		},
	}
	ts, err := oauth.NewTokenSource(&route.Auth.OAuth, oauth.Options{CAFile: route.TLS.CAFile})
	if err != nil {
		log.Fatalf("route %s: %v", route.Name, err)
	}
	xo := oauth.NewXOAUTH2(ts)

	// For each connection: AUTH with xo.Auth, and on 535 5.7.3 call
	// xo.Refused so that the next AUTH brings a new token.
	a, err := xo.Auth(context.TODO(), route.Auth.Username)
	_, _ = a, err
}
