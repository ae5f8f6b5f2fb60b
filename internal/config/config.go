// Package config defines mailgate's YAML configuration: its types, defaults,
// loading (with ${ENV} expansion and *_file secrets) and validation.
//
// The names of keys are part of the user-facing contract (README.md,
// "Running it for real"): add keys freely, never rename them.
//
// Load runs the whole pipeline (load.go explains its order) and returns
// Problems: every problem in the file at once, each naming its exact key,
// with routes and apps named by their name or id (routes[m365].port,
// apps[monitoring].from.allowed[1]) so the line `mailgate config check`
// prints leads straight to the place to fix. Check returns the same list for
// that command.
//
// The most important rule is the sender policy check in Validate: an app may
// only be allowed From addresses its route can send as (Route.SenderSet).
// Exchange Online refuses any other From only at delivery time, after the
// API has answered 202, and a mailbox that keeps being refused is blocked
// from SMTP AUTH for a while (docs/exchange-online.md, "Repeated errors get
// a mailbox blocked"), so such a file is
// refused at startup instead.
//
// Defaults live in WithDefaults; for smtp-auth routes they are Exchange
// Online's own per-mailbox limits. No function here reads the environment or
// the clock on its own: getenv is passed in (nil means os.Getenv).
package config

import (
	"reflect"
	"time"
)

// Route types.
const (
	RouteSMTPAuth  = "smtp-auth" // client submission to smtp.office365.com:587 with AUTH
	RouteConnector = "connector" // inbound connector on the tenant MX host, port 25, no AUTH
	RouteSMTP      = "smtp"      // any other SMTP server (a local relay, the dev capture server)
)

// TLS modes of a route.
const (
	TLSStartTLS = "starttls"
	TLSImplicit = "implicit"
	TLSNone     = "none" // only for type smtp
)

// Auth mechanisms of an smtp-auth route.
const (
	MechXOAUTH2 = "xoauth2"
	MechLogin   = "login"
	MechPlain   = "plain"
)

// FromMailbox as a route's auth.username means: authenticate each message as
// its own From mailbox (app-only OAuth with FullAccess on those mailboxes).
const FromMailbox = "{from}"

// Config is the whole configuration file.
type Config struct {
	Listen    string        `yaml:"listen"`
	Redis     Redis         `yaml:"redis"`
	Auth      Auth          `yaml:"auth"`
	Delivery  Delivery      `yaml:"delivery"`
	Retention time.Duration `yaml:"retention"`
	Log       Log           `yaml:"log"`
	Shutdown  Shutdown      `yaml:"shutdown"`
	API       API           `yaml:"api"`
	Metrics   Metrics       `yaml:"metrics"`
	// TLS makes the API (and metrics.listen) serve HTTPS itself.
	TLS ListenerTLS `yaml:"tls"`
	// AllowedOrigins lists the web origins (https://app.contoso.com) whose
	// pages may POST form or text bodies to the API from a browser; from
	// any other origin such a request is refused (package api, origin.go).
	AllowedOrigins []string `yaml:"allowed_origins"`
	Routes         []Route  `yaml:"routes"`
	Apps           []App    `yaml:"apps"`
	// Templates are the named mail templates (webhooks.go).
	Templates []Template `yaml:"templates"`
	SMTP      SMTP       `yaml:"smtp"` // smtp.go
}

// Redis says where the queue lives: exactly one of a single node (URL),
// a Sentinel-managed master (Sentinel) or a Redis Cluster (Cluster).
type Redis struct {
	URL     string `yaml:"url"`      // redis:// or rediss://
	URLFile string `yaml:"url_file"` // the URL (it may hold a password) read from a file
	// Sentinel finds the master through Redis Sentinel and follows failovers.
	Sentinel RedisSentinel `yaml:"sentinel"`
	// Cluster talks to a Redis Cluster through its seed addresses.
	Cluster RedisCluster `yaml:"cluster"`
	// KeyPrefix namespaces every key, so one Redis can serve several installs.
	KeyPrefix string `yaml:"key_prefix"`
	// MinReplicasAcked, when above zero, makes every accepted message wait
	// (WAIT) until that many replicas hold it before the door answers 202 or
	// 250, so a failover right after the answer loses nothing.
	MinReplicasAcked int `yaml:"min_replicas_acked"`
	// ReplicaAckTimeout bounds that wait; past it the door answers 503.
	ReplicaAckTimeout time.Duration `yaml:"replica_ack_timeout"`
	// AllowEviction lets mailgate start although Redis's maxmemory-policy
	// is not noeviction, which it otherwise refuses (package eviction says
	// why): the risk of silently losing queued mail is then the operator's.
	AllowEviction bool `yaml:"allow_eviction"`
}

// RedisSentinel configures a master found through Redis Sentinel. URL is
// go-redis's failover URL form, an alternative to the separate keys:
// redis://[user:password@]sentinel:26379/0?master_name=mymaster&addr=sentinel2:26379
// (the URL's user and password are the sentinels'; the data nodes' go in
// username/password).
type RedisSentinel struct {
	MasterName           string   `yaml:"master_name"`
	Addrs                []string `yaml:"addrs"` // host:port of the sentinels
	URL                  string   `yaml:"url"`
	URLFile              string   `yaml:"url_file"`
	Username             string   `yaml:"username"` // ACL user of the data nodes
	Password             string   `yaml:"password"` // password of the data nodes
	PasswordFile         string   `yaml:"password_file"`
	SentinelUsername     string   `yaml:"sentinel_username"`
	SentinelPassword     string   `yaml:"sentinel_password"`
	SentinelPasswordFile string   `yaml:"sentinel_password_file"`
	DB                   int      `yaml:"db"`
	TLS                  RedisTLS `yaml:"tls"`
}

// IsSet reports whether any sentinel key is set (then sentinel is the
// topology, and a missing key is reported rather than ignored).
func (s RedisSentinel) IsSet() bool { return !reflect.ValueOf(s).IsZero() }

// RedisCluster configures a Redis Cluster. URL is go-redis's cluster URL
// form, an alternative to addrs: redis://[user:password@]node1:6379?addr=node2:6379
type RedisCluster struct {
	Addrs        []string `yaml:"addrs"` // host:port of some of the nodes (seeds)
	URL          string   `yaml:"url"`
	URLFile      string   `yaml:"url_file"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"`
	TLS          RedisTLS `yaml:"tls"`
}

// IsSet reports whether any cluster key is set.
func (c RedisCluster) IsSet() bool { return !reflect.ValueOf(c).IsZero() }

// RedisTLS configures TLS towards Sentinel or Cluster nodes (a single node
// says rediss:// in its URL instead).
type RedisTLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"` // extra roots; the system's otherwise
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	ClientCertFile     string `yaml:"client_cert_file"`
	ClientKeyFile      string `yaml:"client_key_file"`
}

// Auth configures the API's per-app tokens.
type Auth struct {
	SigningKey     string `yaml:"signing_key"` // HS256 secret, at least 32 bytes
	SigningKeyFile string `yaml:"signing_key_file"`
	Issuer         string `yaml:"issuer"`
	// Audience names this installation in every token (the aud claim);
	// tokens for another audience are refused, even when signed with the
	// same key. The default, "<issuer>/<redis.key_prefix>", is stable for
	// the life of an installation; set a name of its own to every
	// installation that might share a signing key with another.
	Audience string `yaml:"audience"`
	// PreviousSigningKeys verify tokens but never sign: the keys a rotation
	// replaced, kept until every app holds a token of the new key.
	PreviousSigningKeys []string `yaml:"previous_signing_keys"`
	// PreviousSigningKeysFile lists files holding one previous key each.
	PreviousSigningKeysFile []string `yaml:"previous_signing_keys_file"`
	// AcceptTokensWithoutAudience lets tokens issued before audiences
	// existed through, while they are replaced.
	AcceptTokensWithoutAudience bool `yaml:"accept_tokens_without_audience"`
}

// PreviousKeys returns the previous signing keys, inline ones first.
func (a *Auth) PreviousKeys() [][]byte {
	var keys [][]byte
	for _, k := range a.PreviousSigningKeys {
		keys = append(keys, []byte(k))
	}
	return keys
}

// Delivery tunes the workers.
type Delivery struct {
	// MaxAge is how long a message may stay undelivered before it fails,
	// whether it is being retried or waits untried on a held route or a
	// waiting mailbox.
	MaxAge time.Duration `yaml:"max_age"`
	// BackoffInitial and BackoffMax bound the exponential backoff (with jitter)
	// between attempts of a deferred message.
	BackoffInitial time.Duration `yaml:"backoff_initial"`
	BackoffMax     time.Duration `yaml:"backoff_max"`
	// VisibilityTimeout is how long a taken message stays invisible to other
	// workers. A worker extends it while it is still delivering, so it only
	// runs out when the worker has died.
	VisibilityTimeout time.Duration `yaml:"visibility_timeout"`
	ConnectTimeout    time.Duration `yaml:"connect_timeout"`
	CommandTimeout    time.Duration `yaml:"command_timeout"`
	// IdleTimeout is how long a worker keeps an idle SMTP connection open for
	// the next message before it says QUIT.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// PollInterval is how soon an idle worker first looks for due messages
	// again; it then waits longer each round, up to a second, or until the
	// first waiting mailbox may send or this instance queues a message.
	PollInterval time.Duration `yaml:"poll_interval"`
	// ProbeInterval is how often a held route is probed (connect, STARTTLS,
	// AUTH) to find out whether it works again; one probe per interval
	// across all instances.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// HelloName is the name sent in EHLO; the host name when empty.
	HelloName string `yaml:"hello_name"`
	// MaxScheduleAhead is how far in the future a submission's send_at
	// may be.
	MaxScheduleAhead time.Duration `yaml:"max_schedule_ahead"`
}

// Shutdown tunes a graceful stop (SIGTERM).
type Shutdown struct {
	// DrainDelay is how long /readyz answers 503 before the listener
	// closes, so a load balancer stops sending first.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// Timeout bounds the whole stop, deliveries in flight included.
	Timeout time.Duration `yaml:"timeout"`
}

// API protects the HTTP API's shared resources from one app or client.
type API struct {
	// MaxInFlightBytes bounds the request bodies received and handled at
	// once (the heap of submissions in flight is about three times it).
	MaxInFlightBytes int64 `yaml:"max_in_flight_bytes"`
	// MaxInFlightBytesPerApp is one app's share of it: beyond it that app
	// gets 429 while the others are still served.
	MaxInFlightBytesPerApp int64 `yaml:"max_in_flight_bytes_per_app"`
	// MinBodyRate is the average rate, in bytes a second, below which a
	// request body is cut off with 408 once BodyRateGrace has passed; -1
	// turns the cut-off off.
	MinBodyRate   int64         `yaml:"min_body_rate"`
	BodyRateGrace time.Duration `yaml:"body_rate_grace"`
}

// ListenerTLS is the certificate the API serves. The files are read again
// when they change, so a renewed certificate needs no restart.
type ListenerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Metrics configures where and to whom /metrics is served.
type Metrics struct {
	// Listen, when set, serves /metrics on this address only, and no
	// longer on the API's listen address: scrapes can then be limited to
	// the monitoring network, away from the apps' port.
	Listen string `yaml:"listen"`
	// Token, when set, is required as `Authorization: Bearer <token>` on
	// every scrape.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Log configures the process log.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Route is one way out to Exchange Online, with one sending identity.
type Route struct {
	Name string    `yaml:"name"`
	Type string    `yaml:"type"`
	Host string    `yaml:"host"`
	Port int       `yaml:"port"`
	TLS  RouteTLS  `yaml:"tls"`
	Auth RouteAuth `yaml:"auth"`
	// Mailboxes lists the From mailboxes of a route whose auth.username is
	// "{from}"; each message authenticates as its own From mailbox.
	Mailboxes []string `yaml:"mailboxes"`
	// SendAs lists the address patterns the mailbox holds Send As on; the
	// mailbox itself is implicit.
	SendAs []string `yaml:"send_as"`
	// AcceptedDomains of the tenant, for connector routes.
	AcceptedDomains []string `yaml:"accepted_domains"`
	Limits          Limits   `yaml:"limits"`
	// Queue bounds what may wait for this route in Redis, all apps
	// together; beyond it submissions get 503 queue_full.
	Queue QueueLimit `yaml:"queue"`
}

// QueueLimit bounds what may wait in the queue (queued, deferred or being
// delivered; failed messages do not count): how many messages and how many
// bytes of them. A message is always taken into an empty queue, even one
// bigger than max_bytes.
type QueueLimit struct {
	MaxMessages int64 `yaml:"max_messages"`
	MaxBytes    int64 `yaml:"max_bytes"`
}

// RouteTLS configures TLS towards the route's server.
type RouteTLS struct {
	Mode               string `yaml:"mode"`
	CAFile             string `yaml:"ca_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// InsecureSkipVerifyAcceptRisk must be set as well before
	// insecure_skip_verify is allowed on an smtp-auth or connector route:
	// there an unverified server receives the OAuth token or password.
	InsecureSkipVerifyAcceptRisk bool   `yaml:"insecure_skip_verify_accept_risk"`
	ClientCertFile               string `yaml:"client_cert_file"`
	ClientKeyFile                string `yaml:"client_key_file"`
}

// RouteAuth configures SMTP AUTH.
type RouteAuth struct {
	Mechanism    string `yaml:"mechanism"`
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	OAuth        OAuth  `yaml:"oauth"`
}

// OAuth configures app-only (client credentials) tokens from Entra ID.
type OAuth struct {
	TenantID              string `yaml:"tenant_id"`
	ClientID              string `yaml:"client_id"`
	ClientSecret          string `yaml:"client_secret"`
	ClientSecretFile      string `yaml:"client_secret_file"`
	ClientCertificateFile string `yaml:"client_certificate_file"`
	ClientKeyFile         string `yaml:"client_key_file"`
	TokenURL              string `yaml:"token_url"`
	Scope                 string `yaml:"scope"`
}

// Limits are per sending mailbox, across all instances.
type Limits struct {
	MessagesPerMinute int `yaml:"messages_per_minute"`
	MaxConnections    int `yaml:"max_connections"`
	RecipientsPerDay  int `yaml:"recipients_per_day"`
}

// App is one application that submits mail with its own tokens.
type App struct {
	ID              string        `yaml:"id"`
	Route           string        `yaml:"route"`
	From            AppFrom       `yaml:"from"`
	Recipients      AppRecipients `yaml:"recipients"`
	RateLimit       AppRateLimit  `yaml:"rate_limit"`
	MaxMessageBytes int64         `yaml:"max_message_bytes"`
	Disabled        bool          `yaml:"disabled"`
	SMTP            AppSMTP       `yaml:"smtp"` // smtp.go
	Webhooks        AppWebhooks   `yaml:"webhooks"`
	// Queue is the app's share of its route's queue limit; beyond it the
	// app's submissions get 429 app_queue_full while other apps go on.
	Queue QueueLimit `yaml:"queue"`
}

// AppFrom is the app's From-address policy.
type AppFrom struct {
	Default string   `yaml:"default"`
	Allowed []string `yaml:"allowed"`
}

// AppRecipients limits whom the app may send to.
type AppRecipients struct {
	Allowed       []string `yaml:"allowed"` // absent means any
	MaxPerMessage int      `yaml:"max_per_message"`
}

// AppRateLimit is the API-side limit; over it the API answers 429.
type AppRateLimit struct {
	PerMinute int `yaml:"per_minute"`
}
