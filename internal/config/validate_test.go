package config

import (
	"strings"
	"testing"
	"time"
)

// TestValidate changes the contract's example one way at a time and expects
// the problem at its exact key.
func TestValidate(t *testing.T) {
	t.Parallel()
	m365 := func(c *Config) *Route { return c.Route("m365") }
	relay := func(c *Config) *Route { return c.Route("relay") }
	app := func(c *Config) *App { return c.App("monitoring") }
	// localSMTP adds a plain smtp route named local.
	localSMTP := func(c *Config) *Route {
		c.Routes = append(c.Routes, Route{Name: "local", Type: RouteSMTP, Host: "localhost", Port: 25, TLS: RouteTLS{Mode: TLSNone}})
		return &c.Routes[len(c.Routes)-1]
	}

	tests := []struct {
		name   string
		change func(b *testBundle, c *Config)
		key    string
		want   []string
	}{
		// Top level.
		{"listen empty", func(_ *testBundle, c *Config) { c.Listen = "" }, "listen", []string{"required"}},
		{"listen without colon", func(_ *testBundle, c *Config) { c.Listen = "8080" }, "listen", []string{"want host:port"}},
		{"redis url scheme", func(_ *testBundle, c *Config) { c.Redis.URL = "http://x" }, "redis.url", []string{`got scheme "http"`}},
		{"redis url empty", func(_ *testBundle, c *Config) { c.Redis.URL = "" }, "redis.url", []string{"required"}},
		{"redis url unparsable", func(_ *testBundle, c *Config) { c.Redis.URL = "redis://:hunter2@%zz" }, "redis.url", []string{"not a valid URL"}},
		{"redis url and cluster", func(_ *testBundle, c *Config) { c.Redis.Cluster.Addrs = []string{"10.0.0.1:6379"} }, "redis.cluster", []string{"redis.url and redis.cluster are all set", "exactly one"}},
		{"redis sentinel and cluster", func(_ *testBundle, c *Config) {
			c.Redis.URL = ""
			c.Redis.Sentinel = RedisSentinel{MasterName: "mymaster", Addrs: []string{"10.0.0.1:26379"}}
			c.Redis.Cluster.Addrs = []string{"10.0.0.1:6379"}
		}, "redis.cluster", []string{"redis.sentinel and redis.cluster", "exactly one"}},
		{"redis sentinel without master name", func(_ *testBundle, c *Config) {
			c.Redis.URL, c.Redis.Sentinel.Addrs = "", []string{"10.0.0.1:26379"}
		}, "redis.sentinel.master_name", []string{"required"}},
		{"redis sentinel without addrs", func(_ *testBundle, c *Config) {
			c.Redis.URL, c.Redis.Sentinel.MasterName = "", "mymaster"
		}, "redis.sentinel.addrs", []string{"required"}},
		{"redis sentinel addr without port", func(_ *testBundle, c *Config) {
			c.Redis.URL = ""
			c.Redis.Sentinel = RedisSentinel{MasterName: "mymaster", Addrs: []string{"10.0.0.1"}}
		}, "redis.sentinel.addrs[0]", []string{"want host:port"}},
		{"redis sentinel url without master name", func(_ *testBundle, c *Config) {
			c.Redis.URL, c.Redis.Sentinel.URL = "", "redis://:secret@10.0.0.1:26379/0"
		}, "redis.sentinel.url", []string{"master_name"}},
		{"redis cluster password alone", func(_ *testBundle, c *Config) {
			c.Redis.URL, c.Redis.Cluster.Password = "", "pw"
		}, "redis.cluster.addrs", []string{"required"}},
		{"redis sentinel password alone", func(_ *testBundle, c *Config) {
			c.Redis.URL, c.Redis.Sentinel.Password = "", "pw"
		}, "redis.sentinel.master_name", []string{"required"}},
		{"redis cluster url scheme", func(_ *testBundle, c *Config) {
			c.Redis.URL, c.Redis.Cluster.URL = "", "http://10.0.0.1:6379"
		}, "redis.cluster.url", []string{`got scheme "http"`}},
		{"redis cluster tls settings without enabled", func(_ *testBundle, c *Config) {
			c.Redis.URL, c.Redis.Cluster.Addrs = "", []string{"10.0.0.1:6379"}
			c.Redis.Cluster.TLS.ServerName = "redis.contoso.com"
		}, "redis.cluster.tls.enabled", []string{"enabled: true"}},
		{"redis cluster tls ca file", func(b *testBundle, c *Config) {
			c.Redis.URL, c.Redis.Cluster.Addrs = "", []string{"10.0.0.1:6379"}
			c.Redis.Cluster.TLS = RedisTLS{Enabled: true, CAFile: b.write(t, "empty.pem", "nothing")}
		}, "redis.cluster.tls.ca_file", []string{"no PEM certificate"}},
		{"redis min replicas negative", func(_ *testBundle, c *Config) { c.Redis.MinReplicasAcked = -1 }, "redis.min_replicas_acked", []string{"must not be negative"}},
		{"redis replica ack timeout zero", func(_ *testBundle, c *Config) {
			c.Redis.MinReplicasAcked, c.Redis.ReplicaAckTimeout = 1, 0
		}, "redis.replica_ack_timeout", []string{"at least 1ms"}},
		{"redis key prefix", func(_ *testBundle, c *Config) { c.Redis.KeyPrefix = "a{b}" }, "redis.key_prefix", []string{"hash tag"}},
		{"signing key missing", func(_ *testBundle, c *Config) { c.Auth.SigningKey = "" }, "auth.signing_key", []string{"required", "32 bytes"}},
		{"signing key short", func(_ *testBundle, c *Config) { c.Auth.SigningKey = strings.Repeat("k", 31) }, "auth.signing_key", []string{"is 31 bytes", "at least 32"}},
		{"issuer", func(_ *testBundle, c *Config) { c.Auth.Issuer = "" }, "auth.issuer", []string{"required"}},
		{"audience blank", func(_ *testBundle, c *Config) { c.Auth.Audience = " " }, "auth.audience", []string{"required"}},
		{"previous key short", func(_ *testBundle, c *Config) { c.Auth.PreviousSigningKeys = []string{"short"} }, "auth.previous_signing_keys[0]", []string{"is 5 bytes", "at least 32"}},
		{"previous key is current", func(_ *testBundle, c *Config) { c.Auth.PreviousSigningKeys = []string{c.Auth.SigningKey} }, "auth.previous_signing_keys[0]", []string{"is the current signing_key"}},
		{"metrics listen", func(_ *testBundle, c *Config) { c.Metrics.Listen = "9090" }, "metrics.listen", []string{"want host:port"}},
		{"metrics listen same as listen", func(_ *testBundle, c *Config) { c.Listen = ":8080"; c.Metrics.Listen = ":8080" }, "metrics.listen", []string{"same address as listen"}},
		{"metrics token short", func(_ *testBundle, c *Config) { c.Metrics.Token = "short" }, "metrics.token", []string{"is 5 bytes", "at least 16"}},
		{"tls cert without key", func(b *testBundle, c *Config) { c.TLS.CertFile = b.dir + "/api.crt" }, "tls.key_file", []string{"cert_file is set but key_file is not"}},
		{"tls cert missing", func(b *testBundle, c *Config) {
			c.TLS = ListenerTLS{CertFile: b.dir + "/nope.crt", KeyFile: b.dir + "/nope.key"}
		}, "tls.cert_file", []string{"no such file"}},
		{"tls cert junk", func(b *testBundle, c *Config) {
			c.TLS = ListenerTLS{CertFile: b.write(t, "api.crt", "junk"), KeyFile: b.write(t, "api.key", "junk")}
		}, "tls.cert_file", []string{"not a usable certificate and key pair"}},
		{"origin with path", func(_ *testBundle, c *Config) { c.AllowedOrigins = []string{"https://app.contoso.com/x"} }, "allowed_origins[0]", []string{"no path"}},
		{"origin without scheme", func(_ *testBundle, c *Config) {
			c.AllowedOrigins = []string{"https://a.contoso.com", "app.contoso.com"}
		}, "allowed_origins[1]", []string{"want an origin"}},
		{"origin star", func(_ *testBundle, c *Config) { c.AllowedOrigins = []string{"*"} }, "allowed_origins[0]", []string{"want an origin"}},
		{"max age", func(_ *testBundle, c *Config) { c.Delivery.MaxAge = 0 }, "delivery.max_age", []string{"must be positive"}},
		{"poll interval", func(_ *testBundle, c *Config) { c.Delivery.PollInterval = -time.Second }, "delivery.poll_interval", []string{"must be positive, got -1s"}},
		{"visibility timeout", func(_ *testBundle, c *Config) { c.Delivery.VisibilityTimeout = 0 }, "delivery.visibility_timeout", []string{"must be positive"}},
		{"retention", func(_ *testBundle, c *Config) { c.Retention = 0 }, "retention", []string{"must be positive"}},
		{"backoff order", func(_ *testBundle, c *Config) { c.Delivery.BackoffInitial = time.Hour }, "delivery.backoff_initial", []string{"1h0m0s is more than delivery.backoff_max (30m0s)"}},
		{"hello name", func(_ *testBundle, c *Config) { c.Delivery.HelloName = "a b" }, "delivery.hello_name", []string{"white space"}},
		{"log level", func(_ *testBundle, c *Config) { c.Log.Level = "verbose" }, "log.level", []string{`got "verbose"`}},
		{"log format", func(_ *testBundle, c *Config) { c.Log.Format = "xml" }, "log.format", []string{"want text or json"}},
		{"api budget negative", func(_ *testBundle, c *Config) { c.API.MaxInFlightBytes = -1 }, "api.max_in_flight_bytes", []string{"must be positive"}},
		{"api share over budget", func(_ *testBundle, c *Config) { c.API.MaxInFlightBytesPerApp = c.API.MaxInFlightBytes + 1 }, "api.max_in_flight_bytes_per_app", []string{"at most api.max_in_flight_bytes"}},
		{"api min body rate", func(_ *testBundle, c *Config) { c.API.MinBodyRate = -2 }, "api.min_body_rate", []string{"-1 for no minimum"}},

		// Routes in general.
		{"no routes", func(_ *testBundle, c *Config) { c.Routes = nil }, "routes", []string{"at least one route"}},
		{"route name missing", func(_ *testBundle, c *Config) { m365(c).Name = "" }, "routes[0].name", []string{"required"}},
		{"route name characters", func(_ *testBundle, c *Config) { m365(c).Name = "m 365" }, "routes[m 365].name", []string{"letters, digits"}},
		{"route name duplicate", func(_ *testBundle, c *Config) { relay(c).Name = "m365" }, "routes[m365].name", []string{`"m365" is already the name of routes[0]`}},
		{"route type missing", func(_ *testBundle, c *Config) { m365(c).Type = "" }, "routes[m365].type", []string{"required"}},
		{"route type unknown", func(_ *testBundle, c *Config) { m365(c).Type = "exchange" }, "routes[m365].type", []string{`unknown type "exchange"`}},
		{"host missing", func(_ *testBundle, c *Config) { m365(c).Host = "" }, "routes[m365].host", []string{"required"}},
		{"host with port", func(_ *testBundle, c *Config) { m365(c).Host = "smtp.office365.com:587" }, "routes[m365].host", []string{"without scheme or port"}},
		{"host with scheme", func(_ *testBundle, c *Config) { m365(c).Host = "smtp://smtp.office365.com" }, "routes[m365].host", []string{"without scheme or port"}},
		{"connector host missing", func(_ *testBundle, c *Config) { relay(c).Host = "" }, "routes[relay].host", []string{"accepted_domains"}},
		{"port zero", func(_ *testBundle, c *Config) { m365(c).Port = 0 }, "routes[m365].port", []string{"between 1 and 65535, got 0"}},
		{"port too big", func(_ *testBundle, c *Config) { relay(c).Port = 65536 }, "routes[relay].port", []string{"got 65536"}},
		{"tls mode unknown", func(_ *testBundle, c *Config) { m365(c).TLS.Mode = "ssl" }, "routes[m365].tls.mode", []string{`want starttls, implicit or none, got "ssl"`}},
		{"tls none on smtp-auth", func(_ *testBundle, c *Config) { m365(c).TLS.Mode = TLSNone }, "routes[m365].tls.mode", []string{"only for type smtp", "Exchange Online requires TLS"}},
		{"tls none on connector", func(_ *testBundle, c *Config) { relay(c).TLS.Mode = TLSNone }, "routes[relay].tls.mode", []string{"Exchange Online requires TLS"}},
		{"tls implicit on smtp-auth", func(_ *testBundle, c *Config) { m365(c).TLS.Mode = TLSImplicit }, "routes[m365].tls.mode", []string{"no port 465", "starttls"}},
		{"tls implicit on connector", func(_ *testBundle, c *Config) { relay(c).TLS.Mode = TLSImplicit }, "routes[relay].tls.mode", []string{"no port 465"}},
		{"server name", func(_ *testBundle, c *Config) { m365(c).TLS.ServerName = "a b" }, "routes[m365].tls.server_name", []string{"want a host name"}},
		{"client cert without key", func(_ *testBundle, c *Config) { relay(c).TLS.ClientKeyFile = "" }, "routes[relay].tls.client_key_file", []string{"client_cert_file is set but client_key_file is not"}},
		{"client key without cert", func(_ *testBundle, c *Config) { relay(c).TLS.ClientCertFile = "" }, "routes[relay].tls.client_cert_file", []string{"client_key_file is set but client_cert_file is not"}},
		{"client cert missing", func(b *testBundle, c *Config) { relay(c).TLS.ClientCertFile = b.dir + "/nope.crt" }, "routes[relay].tls.client_cert_file", []string{"cannot read", "no such file"}},
		{"client key is a directory", func(b *testBundle, c *Config) { relay(c).TLS.ClientKeyFile = b.dir }, "routes[relay].tls.client_key_file", []string{"is a directory"}},
		{"client cert not a certificate", func(b *testBundle, c *Config) { relay(c).TLS.ClientCertFile = b.write(t, "junk", "junk") }, "routes[relay].tls.client_cert_file", []string{"not a usable certificate and key pair"}},
		{"ca file missing", func(b *testBundle, c *Config) { m365(c).TLS.CAFile = b.dir + "/nope.pem" }, "routes[m365].tls.ca_file", []string{"no such file"}},
		{"ca file not PEM", func(b *testBundle, c *Config) { m365(c).TLS.CAFile = b.write(t, "junk", "junk") }, "routes[m365].tls.ca_file", []string{"holds no PEM certificate"}},
		{"insecure_skip_verify on smtp-auth", func(_ *testBundle, c *Config) { m365(c).TLS.InsecureSkipVerify = true }, "routes[m365].tls.insecure_skip_verify", []string{"refused on a smtp-auth route", "OAuth token or password", "routes[m365].tls.insecure_skip_verify_accept_risk: true"}},
		{"insecure_skip_verify on connector", func(_ *testBundle, c *Config) { relay(c).TLS.InsecureSkipVerify = true }, "routes[relay].tls.insecure_skip_verify", []string{"refused on a connector route"}},
		{"limit negative", func(_ *testBundle, c *Config) { relay(c).Limits.MaxConnections = -1 }, "routes[relay].limits.max_connections", []string{"must not be negative (0 means unlimited)"}},
		{"accepted_domains on smtp-auth", func(_ *testBundle, c *Config) { m365(c).AcceptedDomains = []string{"contoso.com"} }, "routes[m365].accepted_domains", []string{"only used by connector routes"}},
		{"send_as pattern", func(_ *testBundle, c *Config) { m365(c).SendAs[1] = "a*@x.com" }, "routes[m365].send_as[1]", []string{`"a*@x.com"`, "partial wildcards"}},

		// smtp-auth.
		{"mechanism", func(_ *testBundle, c *Config) { m365(c).Auth.Mechanism = "ntlm" }, "routes[m365].auth.mechanism", []string{`got "ntlm"`}},
		{"username missing", func(_ *testBundle, c *Config) { m365(c).Auth.Username = "" }, "routes[m365].auth.username", []string{"required"}},
		{"username not an address", func(_ *testBundle, c *Config) { m365(c).Auth.Username = "relay" }, "routes[m365].auth.username", []string{"want the mailbox address", "no @"}},
		{"login without password", func(_ *testBundle, c *Config) { m365(c).Auth.Mechanism = MechLogin }, "routes[m365].auth.password", []string{"required with mechanism login"}},
		{"plain without password", func(_ *testBundle, c *Config) { m365(c).Auth.Mechanism = MechPlain }, "routes[m365].auth.password", []string{"required with mechanism plain"}},
		{"{from} with login", func(_ *testBundle, c *Config) {
			r := m365(c)
			r.Auth.Mechanism, r.Auth.Password, r.Auth.Username, r.SendAs = MechLogin, "pw", FromMailbox, nil
			r.Mailboxes = []string{"a@contoso.com"}
		}, "routes[m365].auth.username", []string{`"{from}" needs mechanism xoauth2`}},
		{"{from} without mailboxes", func(_ *testBundle, c *Config) { m365(c).Auth.Username, m365(c).SendAs = FromMailbox, nil }, "routes[m365].mailboxes", []string{"required with auth.username"}},
		{"{from} with a bad mailbox", func(_ *testBundle, c *Config) {
			r := m365(c)
			r.Auth.Username, r.SendAs, r.Mailboxes = FromMailbox, nil, []string{"a@contoso.com", "*@contoso.com"}
		}, "routes[m365].mailboxes[1]", []string{"want a mailbox address"}},
		{"{from} with send_as", func(_ *testBundle, c *Config) {
			r := m365(c)
			r.Auth.Username, r.Mailboxes = FromMailbox, []string{"a@contoso.com"}
		}, "routes[m365].send_as", []string{"not used with auth.username"}},
		{"mailboxes without {from}", func(_ *testBundle, c *Config) { m365(c).Mailboxes = []string{"a@contoso.com"} }, "routes[m365].mailboxes", []string{"only used by smtp-auth routes whose auth.username is"}},
		{"client id", func(_ *testBundle, c *Config) { m365(c).Auth.OAuth.ClientID = "" }, "routes[m365].auth.oauth.client_id", []string{"required with mechanism xoauth2"}},
		{"tenant id", func(_ *testBundle, c *Config) { m365(c).Auth.OAuth.TenantID = "" }, "routes[m365].auth.oauth.tenant_id", []string{"unless token_url is set"}},
		{"tenant id with a slash", func(_ *testBundle, c *Config) { m365(c).Auth.OAuth.TenantID = "a/b" }, "routes[m365].auth.oauth.tenant_id", []string{`got "a/b"`}},
		{"token url", func(_ *testBundle, c *Config) { m365(c).Auth.OAuth.TokenURL = "ftp://x/token" }, "routes[m365].auth.oauth.token_url", []string{"want https://HOST/TENANT/oauth2/v2.0/token"}},
		{"scope", func(_ *testBundle, c *Config) { m365(c).Auth.OAuth.Scope = "" }, "routes[m365].auth.oauth.scope", []string{"required"}},
		{"no client credential", func(_ *testBundle, c *Config) { m365(c).Auth.OAuth.ClientSecret = "" }, "routes[m365].auth.oauth.client_secret", []string{"give client_secret"}},
		{"secret and certificate", func(b *testBundle, c *Config) {
			o := &m365(c).Auth.OAuth
			o.ClientCertificateFile, o.ClientKeyFile = b.dir+"/relay.crt", b.dir+"/relay.key"
		}, "routes[m365].auth.oauth.client_secret", []string{"not both"}},
		{"certificate without key", func(b *testBundle, c *Config) {
			o := &m365(c).Auth.OAuth
			o.ClientSecret, o.ClientCertificateFile = "", b.dir+"/relay.crt"
		}, "routes[m365].auth.oauth.client_key_file", []string{"client_certificate_file is set but client_key_file is not"}},
		{"certificate missing", func(b *testBundle, c *Config) {
			o := &m365(c).Auth.OAuth
			o.ClientSecret, o.ClientCertificateFile, o.ClientKeyFile = "", b.dir+"/nope.crt", b.dir+"/relay.key"
		}, "routes[m365].auth.oauth.client_certificate_file", []string{"no such file"}},
		{"limit above Exchange: messages", func(_ *testBundle, c *Config) { m365(c).Limits.MessagesPerMinute = 60 }, "routes[m365].limits.messages_per_minute", []string{"60 is above Exchange Online's limit of 30", "throttles"}},
		{"limit above Exchange: connections", func(_ *testBundle, c *Config) { m365(c).Limits.MaxConnections = 4 }, "routes[m365].limits.max_connections", []string{"limit of 3", "432 4.3.2"}},
		{"limit above Exchange: recipients", func(_ *testBundle, c *Config) { m365(c).Limits.RecipientsPerDay = 10001 }, "routes[m365].limits.recipients_per_day", []string{"limit of 10000", "SubmissionQuotaExceeded"}},
		{"limit negative on smtp-auth", func(_ *testBundle, c *Config) { m365(c).Limits.RecipientsPerDay = -1 }, "routes[m365].limits.recipients_per_day", []string{"0 means Exchange Online's limit"}},

		// connector.
		{"connector with a mechanism", func(_ *testBundle, c *Config) { relay(c).Auth.Mechanism = MechLogin }, "routes[relay].auth.mechanism", []string{"does not authenticate"}},
		{"connector with a username", func(_ *testBundle, c *Config) { relay(c).Auth.Username = "a@contoso.com" }, "routes[relay].auth.username", []string{"does not authenticate"}},
		{"connector with a password", func(_ *testBundle, c *Config) { relay(c).Auth.Password = "x" }, "routes[relay].auth.password", []string{"does not authenticate"}},
		{"connector with oauth", func(_ *testBundle, c *Config) { relay(c).Auth.OAuth.ClientID = "x" }, "routes[relay].auth.oauth", []string{"does not authenticate"}},
		{"connector with send_as", func(_ *testBundle, c *Config) { relay(c).SendAs = []string{"a@contoso.com"} }, "routes[relay].send_as", []string{"not used by connector routes"}},
		{"connector without domains", func(_ *testBundle, c *Config) { relay(c).AcceptedDomains = nil }, "routes[relay].accepted_domains", []string{"required"}},
		{"connector single-label domain", func(_ *testBundle, c *Config) { relay(c).AcceptedDomains[1] = "contoso" }, "routes[relay].accepted_domains[1]", []string{"not a domain name"}},
		{"connector wildcard domain", func(_ *testBundle, c *Config) { relay(c).AcceptedDomains[0] = "*.contoso.com" }, "routes[relay].accepted_domains[0]", []string{"wildcard"}},

		// smtp.
		{"smtp username without mechanism", func(_ *testBundle, c *Config) { localSMTP(c).Auth.Username = "u" }, "routes[local].auth.mechanism", []string{"required when auth.username"}},
		{"smtp login without password", func(_ *testBundle, c *Config) {
			r := localSMTP(c)
			r.Auth.Mechanism, r.Auth.Username = MechLogin, "apikey"
		}, "routes[local].auth.password", []string{"required with mechanism login"}},
		{"smtp with {from}", func(_ *testBundle, c *Config) {
			r := localSMTP(c)
			r.Auth.Mechanism, r.Auth.Username = MechXOAUTH2, FromMailbox
		}, "routes[local].auth.username", []string{"only for smtp-auth routes"}},

		// Apps.
		{"no apps", func(_ *testBundle, c *Config) { c.Apps = nil }, "apps", []string{"at least one app"}},
		{"app id missing", func(_ *testBundle, c *Config) { app(c).ID = "" }, "apps[0].id", []string{"required"}},
		{"app id upper case", func(_ *testBundle, c *Config) { app(c).ID = "Monitoring" }, "apps[Monitoring].id", []string{"lower-case"}},
		{"app id leading dash", func(_ *testBundle, c *Config) { app(c).ID = "-x" }, "apps[-x].id", []string{"starting with a letter or digit"}},
		{"app id duplicate", func(_ *testBundle, c *Config) { c.Apps = append(c.Apps, c.Apps[0]) }, "apps[monitoring].id", []string{`"monitoring" is already the id of apps[0]`}},
		{"app route missing", func(_ *testBundle, c *Config) { app(c).Route = "" }, "apps[monitoring].route", []string{"required"}},
		{"app route unknown", func(_ *testBundle, c *Config) { app(c).Route = "nope" }, "apps[monitoring].route", []string{`no route is named "nope"; routes are: m365, relay`}},
		{"from default not an address", func(_ *testBundle, c *Config) { app(c).From.Default = "alerts" }, "apps[monitoring].from.default", []string{"not a single address"}},
		// The API would refuse this From at the door (a display name faking
		// another address); config check must refuse it first.
		{"from default with a faking display name", func(_ *testBundle, c *Config) {
			app(c).From.Default = `"ceo@contoso.com" <alerts@alerts.contoso.com>`
		}, "apps[monitoring].from.default", []string{"not a single address", "display name"}},
		{"from default two addresses", func(_ *testBundle, c *Config) {
			app(c).From.Default = "a@alerts.contoso.com, b@alerts.contoso.com"
		}, "apps[monitoring].from.default", []string{"not a single address"}},
		{"from default with a line break", func(_ *testBundle, c *Config) {
			app(c).From.Default = "a@alerts.contoso.com\r\nBcc: x@evil.com"
		}, "apps[monitoring].from.default", []string{"line break"}},
		{"from allowed pattern", func(_ *testBundle, c *Config) { app(c).From.Allowed[1] = "*@" }, "apps[monitoring].from.allowed[1]", []string{"no domain after @"}},
		{"from neither", func(_ *testBundle, c *Config) { app(c).From = AppFrom{} }, "apps[monitoring].from", []string{"give from.default, from.allowed or both"}},
		{"from default outside allowed", func(_ *testBundle, c *Config) { app(c).From.Allowed = []string{"x@alerts.contoso.com"} }, "apps[monitoring].from.default", []string{`"alerts@alerts.contoso.com" is not matched by any pattern of from.allowed`}},
		{"recipients pattern", func(_ *testBundle, c *Config) { app(c).Recipients.Allowed = []string{"a @contoso.com"} }, "apps[monitoring].recipients.allowed[0]", []string{"contains a space"}},
		{"max per message zero", func(_ *testBundle, c *Config) { app(c).Recipients.MaxPerMessage = 0 }, "apps[monitoring].recipients.max_per_message", []string{"between 1 and 10000, got 0"}},
		{"max per message too many", func(_ *testBundle, c *Config) { app(c).Recipients.MaxPerMessage = 10001 }, "apps[monitoring].recipients.max_per_message", []string{"got 10001"}},
		{"max per message above the route's day", func(_ *testBundle, c *Config) {
			app(c).Route, app(c).Recipients.MaxPerMessage = "m365", 200
			m365(c).Limits.RecipientsPerDay = 100
		}, "apps[monitoring].recipients.max_per_message", []string{"could never be sent"}},
		{"max message bytes", func(_ *testBundle, c *Config) { app(c).MaxMessageBytes = 0 }, "apps[monitoring].max_message_bytes", []string{"must be positive"}},
		{"max message bytes above Exchange", func(_ *testBundle, c *Config) { app(c).MaxMessageBytes = 151 << 20 }, "apps[monitoring].max_message_bytes", []string{"150 MB"}},
		{"rate limit", func(_ *testBundle, c *Config) { app(c).RateLimit.PerMinute = -1 }, "apps[monitoring].rate_limit.per_minute", []string{"must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			c := b.load(t, exampleYAML)
			tt.change(b, c)
			wantProblem(t, c.Validate(), tt.key, tt.want...)
		})
	}
}

// TestValidateReportsEverything checks that one pass finds problems in every
// part of the file, not just the first.
func TestValidateReportsEverything(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.load(t, exampleYAML)
	c.Auth.SigningKey = ""
	c.Routes[0].Port = 0
	c.Routes[1].TLS.Mode = TLSNone
	c.Apps[0].Recipients.MaxPerMessage = 0
	problems := c.Validate()
	for _, key := range []string{"auth.signing_key", "routes[m365].port", "routes[relay].tls.mode", "apps[monitoring].recipients.max_per_message"} {
		wantProblem(t, problems, key)
	}
	if len(problems) != 4 {
		t.Errorf("want exactly 4 problems, got:\n%s", Problems(problems))
	}
}

func TestValidSMTPRouteWithoutTLS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.load(t, exampleYAML)
	c.Routes = append(c.Routes, Route{Name: "local", Type: RouteSMTP, Host: "127.0.0.1", Port: 2525, TLS: RouteTLS{Mode: TLSNone}})
	c.Apps[0].Route = "local"
	if problems := c.Validate(); len(problems) > 0 {
		t.Errorf("problems:\n%s", Problems(problems))
	}
}

// TestInsecureSkipVerifyAcceptedRisk: with the second setting the file is
// valid, and the risk is listed as a warning for every start; on a plain
// smtp route the first setting alone is enough, and warned about too.
func TestInsecureSkipVerifyAcceptedRisk(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.load(t, exampleYAML)
	if w := c.Warnings(); len(w) != 0 {
		t.Fatalf("the example has warnings: %v", w)
	}
	c.Routes[0].TLS.InsecureSkipVerify = true
	c.Routes[0].TLS.InsecureSkipVerifyAcceptRisk = true
	c.Routes = append(c.Routes, Route{Name: "local", Type: RouteSMTP, Host: "127.0.0.1", Port: 2525,
		TLS: RouteTLS{Mode: TLSStartTLS, InsecureSkipVerify: true}})
	if problems := c.Validate(); len(problems) > 0 {
		t.Fatalf("problems:\n%s", Problems(problems))
	}
	w := c.Warnings()
	wantProblem(t, w, "routes[m365].tls.insecure_skip_verify", "NOT verified", "credentials")
	wantProblem(t, w, "routes[local].tls.insecure_skip_verify", "NOT verified")
	if len(w) != 2 {
		t.Errorf("want 2 warnings, got %v", w)
	}
}

// Previous signing keys come inline and from files, one key per file; both
// the rotation and the compatibility setting are warned about.
func TestPreviousSigningKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.write(t, "old.key", strings.Repeat("o", 40)+"\n")
	yaml := strings.Replace(exampleYAML, `  issuer: "mailgate"`, `  issuer: "mailgate"
  audience: mailgate.prod.contoso.com
  previous_signing_keys: ["`+strings.Repeat("p", 32)+`"]
  previous_signing_keys_file: [`+f+`]
  accept_tokens_without_audience: true`, 1)
	c := b.load(t, yaml)
	if got := c.Auth.PreviousKeys(); len(got) != 2 || string(got[0]) != strings.Repeat("p", 32) || string(got[1]) != strings.Repeat("o", 40) {
		t.Fatalf("previous keys %q", got)
	}
	if c.Auth.Audience != "mailgate.prod.contoso.com" {
		t.Fatalf("audience %q", c.Auth.Audience)
	}
	w := c.Warnings()
	wantProblem(t, w, "auth.previous_signing_keys", "2 previous key(s)")
	wantProblem(t, w, "auth.accept_tokens_without_audience", "other installation")

	missing := strings.Replace(exampleYAML, `  issuer: "mailgate"`, `  issuer: "mailgate"
  previous_signing_keys_file: [`+b.dir+`/nope.key]`, 1)
	wantProblem(t, b.check(t, missing), "auth.previous_signing_keys_file[0]", "cannot read")
}
