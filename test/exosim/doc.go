// Package exosim is an Exchange Online simulator for mailgate's tests: an
// SMTP server (github.com/emersion/go-smtp) and an Entra ID token endpoint
// (net/http over TLS), both on 127.0.0.1, that answer the way Microsoft 365
// does. It imitates the facts in the project's notes on how Exchange Online
// accepts mail (docs/exchange-online.md), so tests can check that mailgate reacts
// correctly to each of Exchange's answers without a tenant. Where the notes
// give no exact reply text, only the code and enhanced code are meant to
// match.
//
// # What is imitated
//
// ModeSubmission behaves like smtp.office365.com:587 (SMTP AUTH client
// submission):
//   - STARTTLS first (TLS 1.2 or later). AUTH is advertised only after it, and
//     AUTH or MAIL before it answer 530 5.7.0.
//   - AUTH LOGIN and PLAIN against Options.Mailboxes (535 5.7.3 on a wrong
//     password, 550 5.7.30 when basic auth is switched off), and XOAUTH2 with
//     tokens from the simulator's own token endpoint. SMTP AUTH can be switched
//     off per tenant or mailbox (535 5.7.139).
//   - MAIL before AUTH answers 530 5.7.57. Both MAIL FROM and the header From
//     must be the mailbox or an address it holds Send As on, else 550 5.7.60.
//   - The per-mailbox limits: a 4th concurrent authenticated connection gets
//     432 4.3.2 at AUTH; more than 30 messages in a rolling minute are accepted
//     (Exchange delays them) but recorded in Stats; more than 10,000
//     recipients in a rolling day get 554 5.2.0 ...SubmissionQuotaExceeded at
//     the end of DATA; a message over 35 MB gets 552 5.3.4.
//
// ModeConnector behaves like the tenant MX host on port 25 behind an inbound
// connector: STARTTLS, no AUTH, and senders must be in an accepted domain, or
// the client must present a certificate signed by the simulator's CA whose CN
// or SAN names the connector (a certificate connector), else 550 5.7.64. Limits
// are counted per MAIL FROM address.
//
// Every reply carries an enhanced status code. Replies that the simulator
// chooses itself (refusals and scripted replies) are counted in Stats.Replies
// by enhanced code. Sim.Script queues replies for the next commands of a
// stage, including dropping the connection without a reply, for the failures
// that are hard to provoke otherwise (451 4.7.500 throttling, 5.1.10 unknown
// recipient, a drop after DATA).
//
// # Certificates
//
// Start makes a throw-away ECDSA P-256 CA and a server certificate for
// 127.0.0.1, ::1 and localhost, and writes the CA to CAFile so that mailgate
// can be given it as tls.ca_file. ClientCert mints client certificates from
// the same CA for connector tests; UntrustedClientCert mints them from a CA
// nobody trusts.
//
// # Token endpoint
//
// The token endpoint imitates the Entra ID v2 client-credentials grant
// (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow)
// closely enough for MSAL for Go (github.com/AzureAD/microsoft-authentication-library-for-go)
// to use it: it serves /{tenant}/v2.0/.well-known/openid-configuration and
// /{tenant}/oauth2/v2.0/token over HTTPS with the simulator's CA, accepts a
// client secret or an RFC 7523 client assertion (RS256 with x5t, or PS256
// with x5t#S256 as MSAL sends), and issues opaque access tokens that the SMTP
// side accepts in XOAUTH2 until they expire. MSAL must be configured with
// the authority Sim.Authority(), confidential.WithInstanceDiscovery(false)
// (otherwise it asks login.microsoftonline.com to validate the host) and
// confidential.WithHTTPClient(Sim.HTTPClient()) or any client trusting CAFile.
//
// # Time and waiting
//
// Options.Now drives the rolling windows and token expiry, so tests move time
// instead of sleeping. Client assertions and certificates are checked against
// the real clock, because MSAL and crypto/x509 sign and issue with it.
// WaitForMessages, WaitStats and WaitIdle wait on a signal that every change
// broadcasts, with a deadline; nothing in the package sleeps.
//
// Start registers Close with t.Cleanup. Close stops both servers, closes the
// remaining connections and waits for every SMTP session to end, failing the
// test if one does not.
package exosim
