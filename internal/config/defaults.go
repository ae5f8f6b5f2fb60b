package config

import (
	"strings"
	"time"
)

// Defaults. The limits of smtp-auth routes are Exchange Online's own limits
// for SMTP AUTH client submission, per mailbox (docs/exchange-online.md,
// "Per-mailbox limits of SMTP AUTH"):
// going above them only turns into 432 4.3.2 replies, delays and, for the
// daily recipient quota, 554 5.2.0 SubmissionQuotaExceeded.
const (
	DefaultListen   = ":8080"
	DefaultRedisURL = "redis://127.0.0.1:6379/0"
	// DefaultReplicaAckTimeout bounds the wait for replicas when
	// redis.min_replicas_acked is set.
	DefaultReplicaAckTimeout = time.Second
	DefaultKeyPrefix         = "mailgate"
	DefaultIssuer            = "mailgate"

	DefaultMaxAge            = 24 * time.Hour
	DefaultBackoffInitial    = 30 * time.Second
	DefaultBackoffMax        = 30 * time.Minute
	DefaultVisibilityTimeout = time.Minute
	DefaultConnectTimeout    = 30 * time.Second
	DefaultCommandTimeout    = 5 * time.Minute
	DefaultIdleTimeout       = 30 * time.Second
	DefaultPollInterval      = 200 * time.Millisecond
	DefaultProbeInterval     = time.Minute
	DefaultRetention         = 7 * 24 * time.Hour

	// The HTTP API's body budget and slow-body cut-off (package api).
	DefaultMaxInFlightBytes = 256 << 20
	DefaultMinBodyRate      = 4 << 10 // bytes a second: a slow mobile link's
	DefaultBodyRateGrace    = 10 * time.Second

	DefaultLogLevel  = "info"
	DefaultLogFormat = "text"

	// Office365Host is the SMTP AUTH client submission endpoint.
	Office365Host = "smtp.office365.com"
	// Office365Scope is the OAuth scope of an app-only token for SMTP.
	Office365Scope = "https://outlook.office365.com/.default"

	ExchangeMessagesPerMinute = 30
	ExchangeMaxConnections    = 3
	ExchangeRecipientsPerDay  = 10000

	// DefaultMaxConnections keeps connector and plain smtp routes as polite
	// as smtp-auth ones unless told otherwise.
	DefaultMaxConnections = 3

	// What may wait for one route in Redis (Route.Queue): far more than a
	// working route holds (it delivers within minutes), and about a
	// weekend of a held smtp-auth mailbox's 30 a minute, yet small enough
	// that a route which keeps receiving and cannot deliver fills neither
	// Redis's memory nor its disk.
	DefaultQueueMaxMessages = 100000
	DefaultQueueMaxBytes    = 1 << 30 // 1 GiB

	DefaultMaxMessageBytes = 25 << 20 // 26214400 (25 MiB), below Exchange Online's default message size limit of 35 MB
	DefaultMaxPerMessage   = 500      // Exchange Online's default recipients per message
)

// WithDefaults fills every unset field with its default, in place, and
// returns c so that both `c.WithDefaults()` and `c = c.WithDefaults()` work.
// It never overwrites a value that is set, so calling it twice is harmless.
//
// A zero limit of a connector or smtp route means unlimited; a zero limit of
// an smtp-auth route means Exchange Online's limit, because there is no
// unlimited there.
func (c *Config) WithDefaults() *Config {
	setString(&c.Listen, DefaultListen)
	// The single-node default only when no other topology is chosen, so that
	// setting sentinel or cluster alone is enough.
	if c.Redis.URLFile == "" && !c.Redis.Sentinel.IsSet() && !c.Redis.Cluster.IsSet() {
		setString(&c.Redis.URL, DefaultRedisURL)
	}
	setDuration(&c.Redis.ReplicaAckTimeout, DefaultReplicaAckTimeout)
	setString(&c.Redis.KeyPrefix, DefaultKeyPrefix)
	setString(&c.Auth.Issuer, DefaultIssuer)
	setString(&c.Auth.Audience, DefaultAudience(c.Auth.Issuer, c.Redis.KeyPrefix))

	d := &c.Delivery
	setDuration(&d.MaxAge, DefaultMaxAge)
	setDuration(&d.BackoffInitial, DefaultBackoffInitial)
	setDuration(&d.BackoffMax, DefaultBackoffMax)
	setDuration(&d.VisibilityTimeout, DefaultVisibilityTimeout)
	setDuration(&d.ConnectTimeout, DefaultConnectTimeout)
	setDuration(&d.CommandTimeout, DefaultCommandTimeout)
	setDuration(&d.IdleTimeout, DefaultIdleTimeout)
	setDuration(&d.PollInterval, DefaultPollInterval)
	setDuration(&d.ProbeInterval, DefaultProbeInterval)
	setDuration(&d.MaxScheduleAhead, DefaultMaxScheduleAhead)
	setDuration(&c.Retention, DefaultRetention)

	setInt64(&c.API.MaxInFlightBytes, DefaultMaxInFlightBytes)
	setInt64(&c.API.MaxInFlightBytesPerApp, c.API.MaxInFlightBytes/4)
	setInt64(&c.API.MinBodyRate, DefaultMinBodyRate)
	setDuration(&c.API.BodyRateGrace, DefaultBodyRateGrace)
	setString(&c.Log.Level, DefaultLogLevel)
	setString(&c.Log.Format, DefaultLogFormat)

	c.SMTP.withDefaults()
	for i := range c.Routes {
		c.Routes[i].withDefaults()
	}
	sharing := map[string]int{}
	for _, a := range c.Apps {
		sharing[a.Route]++
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		setInt64(&a.MaxMessageBytes, DefaultMaxMessageBytes)
		setInt(&a.Recipients.MaxPerMessage, DefaultMaxPerMessage)
		// RateLimit.PerMinute stays 0: no API-side limit unless asked for.
		a.webhookDefaults()
		// An app's share of its route's queue: all of it when it is the
		// route's only app, half when others share the route, so that one
		// app that floods it cannot shut the others out.
		if r := c.Route(a.Route); r != nil {
			share := int64(1)
			if sharing[a.Route] > 1 {
				share = 2
			}
			setInt64(&a.Queue.MaxMessages, r.Queue.MaxMessages/share)
			setInt64(&a.Queue.MaxBytes, r.Queue.MaxBytes/share)
		}
	}
	return c
}

func (r *Route) withDefaults() {
	setInt64(&r.Queue.MaxMessages, DefaultQueueMaxMessages)
	setInt64(&r.Queue.MaxBytes, DefaultQueueMaxBytes)
	switch r.Type {
	case RouteSMTPAuth:
		setString(&r.Host, Office365Host)
		setInt(&r.Port, 587)
		setString(&r.TLS.Mode, TLSStartTLS)
		setString(&r.Auth.Mechanism, MechXOAUTH2)
		if r.Auth.Mechanism == MechXOAUTH2 {
			setString(&r.Auth.OAuth.Scope, Office365Scope)
		}
		setInt(&r.Limits.MessagesPerMinute, ExchangeMessagesPerMinute)
		setInt(&r.Limits.MaxConnections, ExchangeMaxConnections)
		setInt(&r.Limits.RecipientsPerDay, ExchangeRecipientsPerDay)
	case RouteConnector:
		if r.Host == "" && len(r.AcceptedDomains) > 0 {
			r.Host = MXHost(r.AcceptedDomains[0])
		}
		setInt(&r.Port, 25)
		setString(&r.TLS.Mode, TLSStartTLS)
		setInt(&r.Limits.MaxConnections, DefaultMaxConnections)
	case RouteSMTP:
		setInt(&r.Port, 25)
		setString(&r.TLS.Mode, TLSStartTLS)
		setInt(&r.Limits.MaxConnections, DefaultMaxConnections)
	}
}

// DefaultAudience is auth.audience when the file gives none: the issuer and
// the key prefix, the two names of an installation that stay the same for
// its whole life (changing either already cuts it off from its tokens or
// its queue).
func DefaultAudience(issuer, keyPrefix string) string { return issuer + "/" + keyPrefix }

// MXHost returns the Exchange Online MX host of a tenant's domain, the host a
// connector route delivers to: the domain in lower case with its dots turned
// into dashes, under mail.protection.outlook.com (contoso.com becomes
// contoso-com.mail.protection.outlook.com).
func MXHost(domain string) string {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	return strings.ReplaceAll(d, ".", "-") + ".mail.protection.outlook.com"
}

func setString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setInt64(p *int64, v int64) {
	if *p == 0 {
		*p = v
	}
}

func setDuration(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}
