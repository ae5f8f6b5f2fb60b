package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/mailgate/internal/addrpolicy"
	"github.com/mailgate/mailgate/internal/apppolicy"
)

const (
	// minSigningKey is the shortest HS256 key RFC 7518 section 3.2 allows:
	// the size of the hash output.
	minSigningKey = 32
	// minMetricsToken is the shortest metrics.token accepted: long enough
	// that guessing it over the network is hopeless.
	minMetricsToken = 16
	// maxPerMessage bounds recipients.max_per_message: more recipients than
	// a day's quota of one Exchange mailbox make no sense in one message.
	maxPerMessage = 10000
	// exchangeMaxMessageBytes is the largest message Exchange Online can be
	// configured to accept (the default is 35 MB).
	exchangeMaxMessageBytes = 150 << 20
)

var (
	routeNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	appIDRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
)

// Validate checks c, which WithDefaults has filled, and returns every problem
// it finds, in file order; nil means c is fine. It also reads the TLS and
// OAuth certificate files the routes name, so that a missing file is found by
// `mailgate config check` rather than by the first delivery.
//
// Besides the shape of each value it runs the policy check: every
// from.allowed pattern and from.default address of an app must be something
// its route can send as (Route.SenderSet), because Exchange Online refuses
// anything else only after the message was accepted and queued, and a
// mailbox that keeps getting refused is blocked from SMTP AUTH altogether.
func (c *Config) Validate() []Problem {
	v := &validator{}
	v.top(c)
	if len(c.Routes) == 0 {
		v.add("routes", "at least one route is required")
	}
	routeIdx := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		key := routeKey(i, r)
		if j, dup := routeIdx[r.Name]; dup && r.Name != "" {
			v.add(key+".name", "%q is already the name of routes[%d]", r.Name, j)
		} else {
			routeIdx[r.Name] = i
		}
		v.route(key, r)
	}
	if len(c.Apps) == 0 {
		v.add("apps", "at least one app is required")
	}
	appIdx := map[string]int{}
	for i := range c.Apps {
		a := &c.Apps[i]
		key := appKey(i, a)
		if j, dup := appIdx[a.ID]; dup && a.ID != "" {
			v.add(key+".id", "%q is already the id of apps[%d]", a.ID, j)
		} else {
			appIdx[a.ID] = i
		}
		v.app(c, key, a)
		v.webhooks(c, key, a)
	}
	v.templates(c)
	v.smtp(c)
	return v.problems
}

// routeKey names route i in problem keys: routes[m365], or routes[0] when it
// has no name.
func routeKey(i int, r *Route) string {
	if r.Name != "" {
		return "routes[" + r.Name + "]"
	}
	return fmt.Sprintf("routes[%d]", i)
}

// appKey names app i in problem keys: apps[monitoring], or apps[0].
func appKey(i int, a *App) string {
	if a.ID != "" {
		return "apps[" + a.ID + "]"
	}
	return fmt.Sprintf("apps[%d]", i)
}

type validator struct {
	problems []Problem
}

func (v *validator) add(key, format string, args ...any) {
	v.problems = append(v.problems, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) top(c *Config) {
	if c.Listen == "" {
		v.add("listen", "required, such as :8080")
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		v.add("listen", "want host:port, such as :8080 or 127.0.0.1:8080, got %q", c.Listen)
	}

	v.redis(&c.Redis)
	if strings.ContainsAny(c.Redis.KeyPrefix, "{} \t\r\n") {
		v.add("redis.key_prefix", "must not contain braces or white space: braces would change the Redis Cluster hash tag of every key, got %q", c.Redis.KeyPrefix)
	}

	switch n := len(c.Auth.SigningKey); {
	case n == 0:
		v.add("auth.signing_key", "required: an HS256 secret of at least %d bytes (or give auth.signing_key_file)", minSigningKey)
	case n < minSigningKey:
		v.add("auth.signing_key", "is %d bytes; an HS256 key must be at least %d bytes (RFC 7518 section 3.2)", n, minSigningKey)
	}
	if c.Auth.Issuer == "" {
		v.add("auth.issuer", "required")
	}
	if strings.TrimSpace(c.Auth.Audience) == "" {
		v.add("auth.audience", "required: a name for this installation, such as mailgate.prod.contoso.com")
	}
	for i, k := range c.Auth.PreviousSigningKeys {
		switch {
		case len(k) < minSigningKey:
			v.add(fmt.Sprintf("auth.previous_signing_keys[%d]", i), "is %d bytes; an HS256 key must be at least %d bytes (RFC 7518 section 3.2)", len(k), minSigningKey)
		case k == c.Auth.SigningKey:
			v.add(fmt.Sprintf("auth.previous_signing_keys[%d]", i), "is the current signing_key; list only the keys it replaced")
		}
	}

	v.keyPair("tls.cert_file", "tls.key_file", "cert_file", "key_file", c.TLS.CertFile, c.TLS.KeyFile, true)
	for i, o := range c.AllowedOrigins {
		if err := validateOrigin(o); err != nil {
			v.add(fmt.Sprintf("allowed_origins[%d]", i), "%v", err)
		}
	}
	if m := c.Metrics.Listen; m != "" {
		if _, port, err := net.SplitHostPort(m); err != nil {
			v.add("metrics.listen", "want host:port, such as :9090 or 10.0.0.5:9090, got %q", m)
		} else if m == c.Listen && port != "0" {
			v.add("metrics.listen", "is the same address as listen (%s); leave it empty to serve /metrics there", m)
		}
	}
	if n := len(c.Metrics.Token); n > 0 && n < minMetricsToken {
		v.add("metrics.token", "is %d bytes; use at least %d (e.g. `openssl rand -base64 24`)", n, minMetricsToken)
	}

	d := &c.Delivery
	for _, f := range []struct {
		key string
		d   time.Duration
	}{
		{"delivery.max_age", d.MaxAge},
		{"delivery.backoff_initial", d.BackoffInitial},
		{"delivery.backoff_max", d.BackoffMax},
		{"delivery.visibility_timeout", d.VisibilityTimeout},
		{"delivery.connect_timeout", d.ConnectTimeout},
		{"delivery.command_timeout", d.CommandTimeout},
		{"delivery.idle_timeout", d.IdleTimeout},
		{"delivery.poll_interval", d.PollInterval},
		{"delivery.probe_interval", d.ProbeInterval},
		{"delivery.max_schedule_ahead", d.MaxScheduleAhead},
		{"retention", c.Retention},
	} {
		if f.d <= 0 {
			v.add(f.key, "must be positive, got %s", f.d)
		}
	}
	if d.BackoffInitial > 0 && d.BackoffMax > 0 && d.BackoffInitial > d.BackoffMax {
		v.add("delivery.backoff_initial", "%s is more than delivery.backoff_max (%s)", d.BackoffInitial, d.BackoffMax)
	}
	if strings.ContainsAny(d.HelloName, " \t\r\n") {
		v.add("delivery.hello_name", "must be a host name without white space, got %q", d.HelloName)
	}

	if a := c.API; a.MaxInFlightBytes < 0 {
		v.add("api.max_in_flight_bytes", "must be positive, got %d", a.MaxInFlightBytes)
	} else if a.MaxInFlightBytesPerApp < 0 || a.MaxInFlightBytesPerApp > a.MaxInFlightBytes {
		v.add("api.max_in_flight_bytes_per_app", "must be positive and at most api.max_in_flight_bytes (%d), got %d",
			a.MaxInFlightBytes, a.MaxInFlightBytesPerApp)
	}
	if c.API.MinBodyRate < -1 {
		v.add("api.min_body_rate", "want bytes a second, or -1 for no minimum, got %d", c.API.MinBodyRate)
	}
	if c.API.BodyRateGrace < 0 {
		v.add("api.body_rate_grace", "must be positive, got %s", c.API.BodyRateGrace)
	}

	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		v.add("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		v.add("log.format", "want text or json, got %q", c.Log.Format)
	}
}

// validateOrigin checks a web origin as browsers send it in the Origin
// header: scheme, host and optional port, nothing else (RFC 6454).
func validateOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		strings.TrimSuffix(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("want an origin such as https://app.contoso.com (scheme, host, optional port; no path), got %q", o)
	}
	return nil
}

func (v *validator) route(key string, r *Route) {
	switch {
	case r.Name == "":
		v.add(key+".name", "required")
	case !routeNameRE.MatchString(r.Name):
		v.add(key+".name", "%q: use only letters, digits, '_', '.' and '-'", r.Name)
	}

	v.queueLimit(key, r.Queue)
	exchange := r.Type == RouteSMTPAuth || r.Type == RouteConnector
	switch r.Type {
	case RouteSMTPAuth, RouteConnector, RouteSMTP:
	case "":
		v.add(key+".type", "required: smtp-auth, connector or smtp")
	default:
		v.add(key+".type", "unknown type %q; want smtp-auth, connector or smtp", r.Type)
	}

	switch {
	case r.Host == "" && r.Type == RouteConnector:
		v.add(key+".host", "required (or give accepted_domains, and the tenant's MX host is derived from the first)")
	case r.Host == "":
		v.add(key+".host", "required")
	case strings.ContainsAny(r.Host, " \t\r\n/@") || strings.Contains(r.Host, ":") && net.ParseIP(r.Host) == nil:
		v.add(key+".host", "want a host name or IP address, without scheme or port (the port goes under port), got %q", r.Host)
	}
	if r.Port < 1 || r.Port > 65535 {
		v.add(key+".port", "must be between 1 and 65535, got %d", r.Port)
	}

	v.routeTLS(key+".tls", r, exchange)

	switch r.Type {
	case RouteSMTPAuth:
		v.smtpAuth(key, r)
	case RouteConnector:
		v.connector(key, r)
	case RouteSMTP:
		v.plainSMTP(key, r)
	}

	if r.Type != RouteConnector && len(r.AcceptedDomains) > 0 {
		v.add(key+".accepted_domains", "only used by connector routes")
	}
	if (r.Type != RouteSMTPAuth || r.Auth.Username != FromMailbox) && len(r.Mailboxes) > 0 {
		v.add(key+".mailboxes", "only used by smtp-auth routes whose auth.username is %q", FromMailbox)
	}
	for i, s := range r.SendAs {
		if _, err := addrpolicy.Parse(s); err != nil {
			v.add(fmt.Sprintf("%s.send_as[%d]", key, i), "%v", err)
		}
	}

	lim := []struct {
		key      string
		n        int
		exchange int
		refusal  string
	}{
		{"messages_per_minute", r.Limits.MessagesPerMinute, ExchangeMessagesPerMinute, "Exchange Online throttles the mailbox, delaying what goes above it"},
		{"max_connections", r.Limits.MaxConnections, ExchangeMaxConnections, "Exchange Online refuses further connections with 432 4.3.2"},
		{"recipients_per_day", r.Limits.RecipientsPerDay, ExchangeRecipientsPerDay, "Exchange Online refuses submissions past it with 554 5.2.0 SubmissionQuotaExceeded"},
	}
	for _, l := range lim {
		switch {
		case l.n < 0:
			v.add(key+".limits."+l.key, "must not be negative (0 means %s), got %d", zeroLimit(r.Type), l.n)
		case r.Type == RouteSMTPAuth && l.n > l.exchange:
			v.add(key+".limits."+l.key, "%d is above Exchange Online's limit of %d per mailbox: %s", l.n, l.exchange, l.refusal)
		}
	}
}

func zeroLimit(typ string) string {
	if typ == RouteSMTPAuth {
		return "Exchange Online's limit"
	}
	return "unlimited"
}

func (v *validator) routeTLS(key string, r *Route, exchange bool) {
	t := &r.TLS
	switch t.Mode {
	case TLSStartTLS:
	case TLSImplicit:
		if exchange {
			v.add(key+".mode", "Exchange Online offers no implicit TLS (no port 465); %s routes need starttls", r.Type)
		}
	case TLSNone:
		if exchange {
			v.add(key+".mode", "none is only for type smtp: Exchange Online requires TLS on %s routes; use starttls", r.Type)
		}
	default:
		v.add(key+".mode", "want starttls, implicit or none, got %q", t.Mode)
	}
	if t.InsecureSkipVerify && exchange && !t.InsecureSkipVerifyAcceptRisk {
		v.add(key+".insecure_skip_verify", "refused on a %s route: whoever sits between mailgate and Exchange Online would receive the route's OAuth token or password and every message; "+
			"give the server's CA with ca_file instead, or, if you really mean it, also set %s.insecure_skip_verify_accept_risk: true", r.Type, key)
	}
	if strings.ContainsAny(t.ServerName, " \t\r\n/:") {
		v.add(key+".server_name", "want a host name, got %q", t.ServerName)
	}
	if t.CAFile != "" {
		if err := checkCAFile(t.CAFile); err != nil {
			v.add(key+".ca_file", "%v", err)
		}
	}
	v.keyPair(key+".client_cert_file", key+".client_key_file", "client_cert_file", "client_key_file", t.ClientCertFile, t.ClientKeyFile, true)
}

// keyPair checks a certificate file and its key file: both or neither, both
// readable, and, when parse is set, a matching TLS key pair.
func (v *validator) keyPair(certKey, keyKey, certName, keyName, cert, key string, parse bool) {
	switch {
	case cert == "" && key == "":
		return
	case cert == "":
		v.add(certKey, "%s is set but %s is not; set both or neither", keyName, certName)
		return
	case key == "":
		v.add(keyKey, "%s is set but %s is not; set both or neither", certName, keyName)
		return
	}
	ok := true
	for _, f := range []struct{ key, path string }{{certKey, cert}, {keyKey, key}} {
		if err := checkReadable(f.path); err != nil {
			v.add(f.key, "%v", err)
			ok = false
		}
	}
	if ok && parse {
		if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
			v.add(certKey, "not a usable certificate and key pair: %v", err)
		}
	}
}

func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read: %w", err)
	}
	if st.IsDir() {
		return fmt.Errorf("cannot read %s: is a directory", path)
	}
	return nil
}

func checkCAFile(path string) error {
	if err := checkReadable(path); err != nil {
		return err
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no PEM certificate", path)
	}
	return nil
}

func (v *validator) smtpAuth(key string, r *Route) {
	a := &r.Auth
	switch a.Mechanism {
	case MechXOAUTH2, MechLogin, MechPlain:
	default:
		v.add(key+".auth.mechanism", "want xoauth2, login or plain, got %q", a.Mechanism)
	}

	switch {
	case a.Username == "":
		v.add(key+".auth.username", "required: the mailbox to authenticate as, or %q", FromMailbox)
	case a.Username == FromMailbox:
		if a.Mechanism != MechXOAUTH2 {
			v.add(key+".auth.username", "%q needs mechanism xoauth2: only app-only OAuth can authenticate as any of several mailboxes", FromMailbox)
		}
		if len(r.Mailboxes) == 0 {
			v.add(key+".mailboxes", "required with auth.username %q: list the mailboxes the app holds FullAccess on", FromMailbox)
		}
		for i, m := range r.Mailboxes {
			if err := validateMailbox(m); err != nil {
				v.add(fmt.Sprintf("%s.mailboxes[%d]", key, i), "want a mailbox address: %v", err)
			}
		}
		if len(r.SendAs) > 0 {
			v.add(key+".send_as", "not used with auth.username %q: each message authenticates as its own From mailbox, which must be listed under mailboxes", FromMailbox)
		}
	default:
		if err := validateMailbox(a.Username); err != nil {
			v.add(key+".auth.username", "want the mailbox address to authenticate as, or %q: %v", FromMailbox, err)
		}
	}
	v.credentials(key, r)
}

// validateMailbox checks a single mailbox address. "*" is a valid character
// of a local part, but here it is far more likely a pattern written where a
// mailbox belongs.
func validateMailbox(m string) error {
	if strings.Contains(m, "*") {
		return fmt.Errorf("%q is a pattern; a mailbox is one address", m)
	}
	return addrpolicy.ValidateAddress(m)
}

// credentials checks what each mechanism needs to authenticate.
func (v *validator) credentials(key string, r *Route) {
	a := &r.Auth
	switch a.Mechanism {
	case MechLogin, MechPlain:
		if a.Password == "" && a.PasswordFile == "" {
			v.add(key+".auth.password", "required with mechanism %s (or give auth.password_file)", a.Mechanism)
		}
	case MechXOAUTH2:
		o := &a.OAuth
		ok := key + ".auth.oauth"
		if o.ClientID == "" {
			v.add(ok+".client_id", "required with mechanism xoauth2: the application (client) ID of the Entra ID app")
		}
		switch {
		case o.TenantID == "" && o.TokenURL == "":
			v.add(ok+".tenant_id", "required with mechanism xoauth2 (unless token_url is set): the directory (tenant) ID or a verified domain of the tenant")
		case strings.ContainsAny(o.TenantID, "/?#% \t\r\n"):
			v.add(ok+".tenant_id", "want a tenant ID or domain, got %q", o.TenantID)
		}
		if o.TokenURL != "" {
			// MSAL talks to authorities over https only; the path names the
			// tenant, as Entra's own endpoint does.
			u, err := url.Parse(o.TokenURL)
			if err != nil || u.Scheme != "https" || u.Host == "" || !strings.HasSuffix(u.Path, "/oauth2/v2.0/token") {
				v.add(ok+".token_url", "want https://HOST/TENANT/oauth2/v2.0/token, got %q", o.TokenURL)
			}
		}
		if r.TLS.Mode == TLSNone {
			v.add(key+".tls.mode", "mechanism xoauth2 sends a bearer token: it needs TLS (starttls or implicit)")
		}
		if o.Scope == "" {
			v.add(ok+".scope", "required with mechanism xoauth2, normally %s", Office365Scope)
		}
		secret := o.ClientSecret != "" || o.ClientSecretFile != ""
		cert := o.ClientCertificateFile != "" || o.ClientKeyFile != ""
		switch {
		case secret && cert:
			v.add(ok+".client_secret", "set either client_secret or client_certificate_file and client_key_file, not both")
		case !secret && !cert:
			v.add(ok+".client_secret", "required with mechanism xoauth2: give client_secret (or client_secret_file), or client_certificate_file and client_key_file")
		case cert:
			// MSAL accepts several encodings of these, so they are
			// only checked for being readable here.
			v.keyPair(ok+".client_certificate_file", ok+".client_key_file", "client_certificate_file", "client_key_file",
				o.ClientCertificateFile, o.ClientKeyFile, false)
		}
	}
}

func (v *validator) connector(key string, r *Route) {
	// Exchange Online identifies a connector by the sending IP or the TLS
	// client certificate; it offers no AUTH on the MX host.
	const noAuth = "a connector route does not authenticate (Exchange Online identifies it by IP address or TLS client certificate); remove it"
	for _, f := range []struct{ key, val string }{
		{"mechanism", r.Auth.Mechanism},
		{"username", r.Auth.Username},
		{"password", r.Auth.Password},
		{"password_file", r.Auth.PasswordFile},
	} {
		if f.val != "" {
			v.add(key+".auth."+f.key, "%s", noAuth)
		}
	}
	if r.Auth.OAuth != (OAuth{}) {
		v.add(key+".auth.oauth", "%s", noAuth)
	}
	if len(r.SendAs) > 0 {
		v.add(key+".send_as", "not used by connector routes: they may send as any address of accepted_domains")
	}
	if len(r.AcceptedDomains) == 0 {
		v.add(key+".accepted_domains", "required: the tenant's accepted domains that apps of this route send from")
	}
	for i, d := range r.AcceptedDomains {
		if err := validateDomain(d); err != nil {
			v.add(fmt.Sprintf("%s.accepted_domains[%d]", key, i), "%v", err)
		}
	}
}

// validateDomain checks a registered domain name such as contoso.com.
func validateDomain(d string) error { return addrpolicy.ValidateDomain(d) }

func (v *validator) plainSMTP(key string, r *Route) {
	a := &r.Auth
	if a.Username == FromMailbox {
		v.add(key+".auth.username", "%q is only for smtp-auth routes", FromMailbox)
	}
	if a.Mechanism == "" {
		if a.Username != "" || a.Password != "" || a.PasswordFile != "" {
			v.add(key+".auth.mechanism", "required when auth.username or auth.password is set: login, plain or xoauth2")
		}
		return
	}
	switch a.Mechanism {
	case MechXOAUTH2, MechLogin, MechPlain:
	default:
		v.add(key+".auth.mechanism", "want xoauth2, login or plain, got %q", a.Mechanism)
		return
	}
	if a.Username == "" {
		v.add(key+".auth.username", "required with mechanism %s", a.Mechanism)
	}
	v.credentials(key, r)
}

// queueLimit checks a route's or an app's queue limit. Zero means the
// default (WithDefaults); there is no unlimited, since Redis is not.
func (v *validator) queueLimit(key string, q QueueLimit) {
	if q.MaxMessages < 0 {
		v.add(key+".queue.max_messages", "must be positive (0 or absent means the default), got %d", q.MaxMessages)
	}
	if q.MaxBytes < 0 {
		v.add(key+".queue.max_bytes", "must be positive (0 or absent means the default), got %d", q.MaxBytes)
	}
}

func (v *validator) app(c *Config, key string, a *App) {
	switch {
	case a.ID == "":
		v.add(key+".id", "required")
	case !appIDRE.MatchString(a.ID):
		v.add(key+".id", "%q: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", a.ID)
	}

	var r *Route
	switch {
	case a.Route == "":
		v.add(key+".route", "required: the name of one of the routes")
	default:
		if r = c.Route(a.Route); r == nil {
			names := make([]string, 0, len(c.Routes))
			for _, r := range c.Routes {
				names = append(names, r.Name)
			}
			v.add(key+".route", "no route is named %q; routes are: %s", a.Route, strings.Join(names, ", "))
		}
	}

	// From and recipient patterns: the same compilation the doors use.
	pol, err := apppolicy.Compile(a.PolicySpec())
	for _, se := range apppolicy.SpecErrors(err) {
		v.add(key+"."+se.Key, "%v", se.Err)
	}
	if n := a.Recipients.MaxPerMessage; n < 1 || n > maxPerMessage {
		v.add(key+".recipients.max_per_message", "must be between 1 and %d, got %d", maxPerMessage, n)
	} else if r != nil && r.Limits.RecipientsPerDay > 0 && n > r.Limits.RecipientsPerDay {
		v.add(key+".recipients.max_per_message", "%d is more than route %q may send to in a day (limits.recipients_per_day %d): such a message could never be sent", n, r.Name, r.Limits.RecipientsPerDay)
	}
	switch n := a.MaxMessageBytes; {
	case n <= 0:
		v.add(key+".max_message_bytes", "must be positive, got %d", n)
	case r != nil && (r.Type == RouteSMTPAuth || r.Type == RouteConnector) && n > exchangeMaxMessageBytes:
		v.add(key+".max_message_bytes", "%d is above the largest message Exchange Online accepts (150 MB; 35 MB unless raised)", n)
	}
	v.queueLimit(key, a.Queue)
	if a.RateLimit.PerMinute < 0 {
		v.add(key+".rate_limit.per_minute", "must not be negative (0 means no limit), got %d", a.RateLimit.PerMinute)
	}

	if r != nil && pol != nil {
		v.policy(key, a, pol, r)
	}
}

// redis checks the Redis topology: exactly one of url, sentinel and cluster.
// URLs may hold a password, so they never appear in a message.
func (v *validator) redis(r *Redis) {
	var set []string
	if r.URL != "" {
		set = append(set, "redis.url")
	}
	if r.Sentinel.IsSet() {
		set = append(set, "redis.sentinel")
	}
	if r.Cluster.IsSet() {
		set = append(set, "redis.cluster")
	}
	switch len(set) {
	case 0:
		v.add("redis.url", "required for a single node, such as redis://127.0.0.1:6379/0; or set redis.sentinel or redis.cluster instead")
	case 1:
	default:
		v.add(set[1], "%s are all set; set exactly one", strings.Join(set, " and "))
		return
	}
	if r.URL != "" {
		v.redisURL("redis.url", r.URL)
	}
	if s := &r.Sentinel; s.IsSet() {
		const k = "redis.sentinel"
		if s.URL != "" {
			if s.MasterName != "" || len(s.Addrs) > 0 {
				v.add(k+".url", "set either url or master_name and addrs, not both")
			} else if u := v.redisURL(k+".url", s.URL); u != nil && u.Query().Get("master_name") == "" {
				v.add(k+".url", "the URL needs ?master_name=, the name the sentinels monitor")
			}
		} else {
			if s.MasterName == "" {
				v.add(k+".master_name", "required: the name the sentinels monitor, such as mymaster")
			}
			if len(s.Addrs) == 0 {
				v.add(k+".addrs", "required: host:port of the sentinels, such as [\"10.0.0.1:26379\"]")
			}
			v.hostPorts(k+".addrs", s.Addrs)
		}
		if s.DB < 0 {
			v.add(k+".db", "must not be negative, got %d", s.DB)
		}
		v.redisTLS(k+".tls", &s.TLS)
	}
	if c := &r.Cluster; c.IsSet() {
		const k = "redis.cluster"
		if c.URL != "" {
			if len(c.Addrs) > 0 {
				v.add(k+".url", "set either url or addrs, not both")
			} else {
				v.redisURL(k+".url", c.URL)
			}
		} else if len(c.Addrs) == 0 {
			v.add(k+".addrs", "required: host:port of some of the cluster's nodes, such as [\"10.0.0.1:6379\"] (or give url)")
		} else {
			v.hostPorts(k+".addrs", c.Addrs)
		}
		v.redisTLS(k+".tls", &c.TLS)
	}
	if r.MinReplicasAcked < 0 {
		v.add("redis.min_replicas_acked", "must not be negative, got %d", r.MinReplicasAcked)
	}
	if r.ReplicaAckTimeout < 0 {
		v.add("redis.replica_ack_timeout", "must not be negative, got %s", r.ReplicaAckTimeout)
	} else if r.MinReplicasAcked > 0 && r.ReplicaAckTimeout < time.Millisecond {
		v.add("redis.replica_ack_timeout", "must be at least 1ms when min_replicas_acked is set (0 would make WAIT block forever)")
	}
}

// redisURL checks a redis:// or rediss:// URL without ever showing it.
func (v *validator) redisURL(key, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		v.add(key, "not a valid URL (not shown: it may hold a password)")
		return nil
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		v.add(key, "want a redis:// or rediss:// (TLS) URL, got scheme %q", u.Scheme)
		return nil
	}
	return u
}

func (v *validator) hostPorts(key string, addrs []string) {
	for i, a := range addrs {
		if h, p, err := net.SplitHostPort(a); err != nil || h == "" || p == "" {
			v.add(fmt.Sprintf("%s[%d]", key, i), "want host:port, such as 10.0.0.1:6379, got %q", a)
		}
	}
}

func (v *validator) redisTLS(key string, t *RedisTLS) {
	if !t.Enabled && (t.CAFile != "" || t.ServerName != "" || t.InsecureSkipVerify || t.ClientCertFile != "" || t.ClientKeyFile != "") {
		v.add(key+".enabled", "TLS settings are given but enabled is false; set enabled: true")
	}
	if t.CAFile != "" {
		if err := checkCAFile(t.CAFile); err != nil {
			v.add(key+".ca_file", "%v", err)
		}
	}
	v.keyPair(key+".client_cert_file", key+".client_key_file", "client_cert_file", "client_key_file", t.ClientCertFile, t.ClientKeyFile, true)
}
