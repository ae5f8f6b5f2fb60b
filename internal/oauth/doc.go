// Package oauth gets app-only access tokens for SMTP AUTH XOAUTH2 from Entra
// ID (the OAuth 2.0 client credentials grant, with a client secret or a
// certificate) and offers them as an XOAUTH2 authenticator for the delivery
// workers.
//
// # Why MSAL, and what is left to it
//
// The token requests go through MSAL for Go
// (github.com/AzureAD/microsoft-authentication-library-for-go), Microsoft's
// own client library: it resolves the tenant's endpoints, signs the RFC 7523
// client assertion for a certificate the way Entra wants it (PS256 with an
// x5t#S256 header) and speaks the token endpoint's dialect. Caching is not
// left to it. MSAL keeps a token until five minutes before it expires by the
// wall clock, and it cannot be told that Exchange refused a token: after a
// refusal it would hand the same dead token back until it ran out. So a
// TokenSource keeps the one cache of the route itself and asks MSAL only when
// that cache needs a token, and MSAL is built with a cache accessor
// (confidential.WithCache) whose Replace empties MSAL's token cache before
// every lookup. Every call to MSAL therefore goes to Entra, without sending
// anything Entra would read differently. Two other ways were weighed and
// rejected: confidential.WithClaims does skip the cache lookup, but it also
// sends a "claims" parameter, which is meant to answer a Conditional Access
// claims challenge and changes the request Entra sees; building a new MSAL
// client for each forced refresh works too, but repeats the tenant discovery
// request each time.
//
// # Refreshing
//
// A token (Entra issues them for 60 to 90 minutes; docs/exchange-online.md,
// "OAuth 2.0 for SMTP, app-only") is
// shared by every connection of a route and refreshed when less than
// Options.RefreshBefore of it remains, or after half its lifetime if that
// comes first, so that even a short-lived token is not fetched for every
// message. The first caller in that window fetches the new token while the
// others go on with the current one; if the refresh fails, callers keep the
// current token until it expires and the refresh is tried again after 30
// seconds. Callers that find no usable token share a single request to Entra
// rather than each sending their own. Invalidate drops the token, for when
// Exchange answers 535 5.7.3 to it.
//
// Expiry is measured on Options.Now: MSAL stamps a token's expiry with the
// wall clock, and the remaining lifetime is carried over to the injected
// clock, so tests move time instead of waiting for it.
//
// # Errors
//
// Entra's refusals come back as *Error: the OAuth error, the AADSTS code
// (https://learn.microsoft.com/entra/identity-platform/reference-error-codes),
// Entra's description and a hint naming the configuration key to check.
// Neither the client secret nor a token ever appears in an error.
package oauth
