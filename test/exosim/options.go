package exosim

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Mode selects which Exchange Online front door the simulator imitates.
type Mode int

const (
	// ModeSubmission is SMTP AUTH client submission, smtp.office365.com:587.
	ModeSubmission Mode = iota
	// ModeConnector is the tenant MX host on port 25 behind an inbound
	// connector: no AUTH, senders identified by domain or client certificate.
	ModeConnector
)

func (m Mode) String() string {
	switch m {
	case ModeSubmission:
		return "submission"
	case ModeConnector:
		return "connector"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Defaults are Exchange Online's documented limits for SMTP AUTH submission
// (https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits).
const (
	DefaultMaxConnectionsPerMailbox = 3
	DefaultMessagesPerMinute        = 30
	DefaultRecipientsPerDay         = 10000
	DefaultMaxRecipientsPerMessage  = 500
	DefaultMaxMessageBytes          = 35 << 20
	DefaultTokenTTL                 = 60 * time.Minute
	// DefaultTenantID is lower case because MSAL lower-cases the authority.
	DefaultTenantID = "5f3c0e4a-7b1d-4c2e-9a8f-0e1d2c3b4a59"
)

// Options configure a Sim. The zero value is a submission endpoint with no
// mailboxes and Exchange Online's default limits.
type Options struct {
	Mode Mode

	// Mailboxes maps each mailbox to its password for AUTH LOGIN and PLAIN.
	// Every mailbox is also valid as the user= of XOAUTH2 (the app is assumed
	// to hold FullAccess on it). Matching ignores case.
	Mailboxes map[string]string
	// SendAs maps a mailbox to the addresses it holds Send As on, besides
	// itself: exact addresses, "*@domain" or "*@*.domain".
	SendAs map[string][]string

	// AcceptedDomains are the tenant's accepted domains (connector mode).
	AcceptedDomains []string
	// RequireClientCert makes the connector a certificate connector: the client
	// must present a certificate signed by the simulator's CA whose CN or a DNS
	// SAN equals ConnectorCertName. Such a client may then send from any domain.
	RequireClientCert bool
	ConnectorCertName string

	// Limits per mailbox (submission) or per MAIL FROM address (connector).
	MaxConnectionsPerMailbox int // concurrent connections; the next gets 432 4.3.2
	MessagesPerMinute        int // rolling minute; excess is recorded, not refused
	RecipientsPerDay         int // rolling 24 hours; excess gets 554 5.2.0
	MaxRecipientsPerMessage  int // the next RCPT gets 452 4.5.3
	MaxMessageBytes          int // larger messages get 552 5.3.4

	// TenantID is the tenant of the token endpoint's paths.
	TenantID string
	// TokenTTL is the lifetime of issued access tokens. MSAL serves a cached
	// token only while it has more than five minutes left, so a TTL under five
	// minutes makes MSAL fetch a new token on every call.
	TokenTTL time.Duration

	// Now is the clock of the rolling windows and of token expiry.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxConnectionsPerMailbox == 0 {
		o.MaxConnectionsPerMailbox = DefaultMaxConnectionsPerMailbox
	}
	if o.MessagesPerMinute == 0 {
		o.MessagesPerMinute = DefaultMessagesPerMinute
	}
	if o.RecipientsPerDay == 0 {
		o.RecipientsPerDay = DefaultRecipientsPerDay
	}
	if o.MaxRecipientsPerMessage == 0 {
		o.MaxRecipientsPerMessage = DefaultMaxRecipientsPerMessage
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.TenantID == "" {
		o.TenantID = DefaultTenantID
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// Addresses compare without case, as Exchange does; keep one spelling.
	mailboxes := make(map[string]string, len(o.Mailboxes))
	for mb, pw := range o.Mailboxes {
		mailboxes[strings.ToLower(mb)] = pw
	}
	o.Mailboxes = mailboxes
	sendAs := make(map[string][]string, len(o.SendAs))
	for mb, pats := range o.SendAs {
		sendAs[strings.ToLower(mb)] = pats
	}
	o.SendAs = sendAs
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.Mode != ModeSubmission && o.Mode != ModeConnector {
		errs = append(errs, fmt.Errorf("Mode: unknown %v", o.Mode))
	}
	if o.RequireClientCert && o.ConnectorCertName == "" {
		errs = append(errs, errors.New("ConnectorCertName: required with RequireClientCert"))
	}
	if o.RequireClientCert && o.Mode != ModeConnector {
		errs = append(errs, errors.New("RequireClientCert: only for ModeConnector"))
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxConnectionsPerMailbox", o.MaxConnectionsPerMailbox},
		{"MessagesPerMinute", o.MessagesPerMinute},
		{"RecipientsPerDay", o.RecipientsPerDay},
		{"MaxRecipientsPerMessage", o.MaxRecipientsPerMessage},
		{"MaxMessageBytes", o.MaxMessageBytes},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %d", f.name, f.v))
		}
	}
	if o.TokenTTL < 0 {
		errs = append(errs, fmt.Errorf("TokenTTL: must not be negative, got %v", o.TokenTTL))
	}
	for mb := range o.SendAs {
		if _, ok := o.Mailboxes[mb]; !ok && o.Mode == ModeSubmission {
			errs = append(errs, fmt.Errorf("SendAs: %q is not in Mailboxes", mb))
		}
	}
	return errors.Join(errs...)
}
