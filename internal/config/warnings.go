package config

import "fmt"

// Warnings lists the settings of c that are allowed but weaken what mailgate
// guarantees, each naming its key. They are not problems, since the operator
// set them on purpose, but `mailgate config check` prints them and every
// start logs them, so that a setting made for a test or an emergency cannot
// quietly outlive its reason.
func (c *Config) Warnings() []Problem {
	var w []Problem
	if c.Redis.AllowEviction {
		w = append(w, Problem{Key: "redis.allow_eviction", Message: "mailgate starts even when Redis's maxmemory-policy lets it evict keys; an evicted key is a lost message, a forgotten idempotency key or a revoked token that works again"})
	}
	if c.Auth.AcceptTokensWithoutAudience {
		w = append(w, Problem{Key: "auth.accept_tokens_without_audience", Message: "tokens without an audience are accepted, including those of any other installation that shares the signing key; issue new tokens and remove this setting"})
	}
	if n := len(c.Auth.PreviousSigningKeys); n > 0 {
		w = append(w, Problem{Key: "auth.previous_signing_keys", Message: fmt.Sprintf("tokens signed with %d previous key(s) are still accepted; remove them once every app has a token signed with signing_key", n)})
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if !r.TLS.InsecureSkipVerify {
			continue
		}
		key := routeKey(i, r) + ".tls.insecure_skip_verify"
		msg := "the server's certificate is NOT verified: anyone between mailgate and the server can read and change the mail"
		if r.Type == RouteSMTPAuth || r.Type == RouteConnector {
			msg = fmt.Sprintf("the certificate of Exchange Online is NOT verified (risk accepted by insecure_skip_verify_accept_risk): anyone in between receives the %s route's credentials and every message", r.Type)
		}
		w = append(w, Problem{Key: key, Message: msg})
	}
	return append(w, c.smtpWarnings()...)
}
