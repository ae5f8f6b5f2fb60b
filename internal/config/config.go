// Package config defines mailgate's YAML configuration: its types, defaults,
// loading (with ${ENV} expansion and *_file secrets) and validation.
//
// The names of keys are part of the user-facing contract
// (shared/contract.md): add keys freely, never rename them.
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
// from SMTP AUTH for a while (shared/exchange-online.md), so such a file is
// refused at startup instead.
//
// Defaults live in WithDefaults; for smtp-auth routes they are Exchange
// Online's own per-mailbox limits. No function here reads the environment or
// the clock on its own: getenv is passed in (nil means os.Getenv).
package config

import "time"

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
	Routes    []Route       `yaml:"routes"`
	Apps      []App         `yaml:"apps"`
	SMTP      SMTP          `yaml:"smtp"` // smtp.go
}

// Redis says where the queue lives.
type Redis struct {
	URL     string `yaml:"url"`      // redis:// or rediss://
	URLFile string `yaml:"url_file"` // the URL (it may hold a password) read from a file
	// KeyPrefix namespaces every key, so one Redis can serve several installs.
	KeyPrefix string `yaml:"key_prefix"`
}

// Auth configures the API's per-app tokens.
type Auth struct {
	SigningKey     string `yaml:"signing_key"` // HS256 secret, at least 32 bytes
	SigningKeyFile string `yaml:"signing_key_file"`
	Issuer         string `yaml:"issuer"`
}

// Delivery tunes the workers.
type Delivery struct {
	// MaxAge is how long a message may stay undelivered before it fails.
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
	// PollInterval is how often an idle worker looks for due messages.
	PollInterval time.Duration `yaml:"poll_interval"`
	// ProbeInterval is how often a held route is probed (connect, STARTTLS,
	// AUTH) to find out whether it works again; one probe per interval
	// across all instances.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// HelloName is the name sent in EHLO; the host name when empty.
	HelloName string `yaml:"hello_name"`
}

// Shutdown tunes a graceful stop (SIGTERM).
type Shutdown struct {
	// DrainDelay is how long /readyz answers 503 before the listener
	// closes, so a load balancer stops sending first.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// Timeout bounds the whole stop, deliveries in flight included.
	Timeout time.Duration `yaml:"timeout"`
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
}

// RouteTLS configures TLS towards the route's server.
type RouteTLS struct {
	Mode               string `yaml:"mode"`
	CAFile             string `yaml:"ca_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	ClientCertFile     string `yaml:"client_cert_file"`
	ClientKeyFile      string `yaml:"client_key_file"`
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
