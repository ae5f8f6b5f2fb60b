package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// SMTP configures the SMTP door: devices and applications that speak SMTP
// submit through it with the same identity, policy and queue as the HTTP
// API. It runs in roles api and all when Listen is set.
type SMTP struct {
	// Listen is the plain listener (STARTTLS offered when TLS is set); ""
	// turns the door off.
	Listen string `yaml:"listen"`
	// ListenTLS is an optional implicit-TLS listener (SMTPS, port 465), for
	// devices that cannot do STARTTLS.
	ListenTLS string  `yaml:"listen_tls"`
	Hostname  string  `yaml:"hostname"` // greeting, EHLO and Received; the host name when empty
	TLS       SMTPTLS `yaml:"tls"`
	// MaxMessageBytes is advertised with SIZE; an app's own
	// max_message_bytes, when smaller, applies to its messages.
	MaxMessageBytes     int64 `yaml:"max_message_bytes"`
	MaxRecipients       int   `yaml:"max_recipients"`
	MaxConnections      int   `yaml:"max_connections"`
	MaxConnectionsPerIP int   `yaml:"max_connections_per_ip"`
	// ReadTimeout bounds the wait for each command line, WriteTimeout each
	// reply, DataTimeout the whole message after DATA: a client that stalls
	// holds a connection slot no longer than that.
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	DataTimeout  time.Duration `yaml:"data_timeout"`
}

// SMTPTLS is the SMTP door's server certificate.
type SMTPTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// AppSMTP says how SMTP clients are recognised as the app besides SMTP AUTH.
type AppSMTP struct {
	// Networks are CIDR prefixes whose unauthenticated clients are this app
	// (the IIS relay pattern). No address may be in two apps' networks.
	Networks []string `yaml:"networks"`
	// InsecureAuthNetworks may authenticate without TLS (old devices on a
	// LAN); everyone else must STARTTLS before AUTH.
	InsecureAuthNetworks []string `yaml:"insecure_auth_networks"`
}

// SMTP door defaults. 36700160 bytes (35 MiB) is Exchange Online's default
// message size limit (an app's max_message_bytes, 25 MiB by default, still
// applies to its own messages). 100 connections from one address is far
// more than a device or a relay host opens, and small enough that one
// misbehaving host cannot take every slot.
const (
	DefaultSMTPMaxMessageBytes     = 36700160
	DefaultSMTPMaxRecipients       = 100
	DefaultSMTPMaxConnections      = 1000
	DefaultSMTPMaxConnectionsPerIP = 100
	// RFC 5321 section 4.5.3.2 asks for 5 minutes per command and 10
	// minutes for the whole DATA; shorter values free a slot sooner.
	DefaultSMTPReadTimeout  = 5 * time.Minute
	DefaultSMTPWriteTimeout = time.Minute
	DefaultSMTPDataTimeout  = 10 * time.Minute
)

func (s *SMTP) withDefaults() {
	setInt64(&s.MaxMessageBytes, DefaultSMTPMaxMessageBytes)
	setInt(&s.MaxRecipients, DefaultSMTPMaxRecipients)
	setInt(&s.MaxConnections, DefaultSMTPMaxConnections)
	setInt(&s.MaxConnectionsPerIP, DefaultSMTPMaxConnectionsPerIP)
	setDuration(&s.ReadTimeout, DefaultSMTPReadTimeout)
	setDuration(&s.WriteTimeout, DefaultSMTPWriteTimeout)
	setDuration(&s.DataTimeout, DefaultSMTPDataTimeout)
}

// smtp checks the smtp section and every app's smtp networks, including
// that no address belongs to two apps: a device that cannot authenticate is
// known only by its address, so that address must name exactly one app.
func (v *validator) smtp(c *Config) {
	s := &c.SMTP
	for _, f := range []struct{ key, addr string }{{"smtp.listen", s.Listen}, {"smtp.listen_tls", s.ListenTLS}} {
		if f.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			v.add(f.key, "want host:port, such as :2525 or 0.0.0.0:465, got %q", f.addr)
		}
	}
	if s.ListenTLS != "" && s.Listen == "" {
		v.add("smtp.listen", "required when smtp.listen_tls is set")
	}
	if s.ListenTLS != "" && s.TLS.CertFile == "" {
		v.add("smtp.tls.cert_file", "required with smtp.listen_tls: implicit TLS needs a server certificate")
	}
	v.keyPair("smtp.tls.cert_file", "smtp.tls.key_file", "cert_file", "key_file", s.TLS.CertFile, s.TLS.KeyFile, true)
	if strings.ContainsAny(s.Hostname, " \t\r\n/:@") {
		v.add("smtp.hostname", "want a host name, got %q", s.Hostname)
	}
	if s.MaxMessageBytes <= 0 {
		v.add("smtp.max_message_bytes", "must be positive, got %d", s.MaxMessageBytes)
	}
	for _, f := range []struct {
		key string
		n   int
	}{{"smtp.max_recipients", s.MaxRecipients}, {"smtp.max_connections", s.MaxConnections}, {"smtp.max_connections_per_ip", s.MaxConnectionsPerIP}} {
		if f.n <= 0 {
			v.add(f.key, "must be positive, got %d", f.n)
		}
	}
	if s.MaxConnectionsPerIP > s.MaxConnections && s.MaxConnections > 0 {
		v.add("smtp.max_connections_per_ip", "%d is more than smtp.max_connections (%d)", s.MaxConnectionsPerIP, s.MaxConnections)
	}
	for _, f := range []struct {
		key string
		d   time.Duration
	}{{"smtp.read_timeout", s.ReadTimeout}, {"smtp.write_timeout", s.WriteTimeout}, {"smtp.data_timeout", s.DataTimeout}} {
		if f.d <= 0 {
			v.add(f.key, "must be positive, got %s", f.d)
		}
	}

	type owned struct {
		prefix netip.Prefix
		key    string
		app    string
	}
	var seen []owned
	for i := range c.Apps {
		a := &c.Apps[i]
		key := appKey(i, a) + ".smtp"
		for j, s := range a.SMTP.Networks {
			k := fmt.Sprintf("%s.networks[%d]", key, j)
			p, err := ParseNetwork(s)
			if err != nil {
				v.add(k, "%v", err)
				continue
			}
			for _, o := range seen {
				if o.prefix.Overlaps(p) && o.app != a.ID {
					v.add(k, "%s overlaps %s of app %s (%s): an address may belong to one app only", p, o.prefix, o.app, o.key)
				}
			}
			seen = append(seen, owned{p, k, a.ID})
		}
		for j, s := range a.SMTP.InsecureAuthNetworks {
			if _, err := ParseNetwork(s); err != nil {
				v.add(fmt.Sprintf("%s.insecure_auth_networks[%d]", key, j), "%v", err)
			}
		}
	}
}

// ParseNetwork parses a CIDR prefix such as 10.1.2.0/24, or a single
// address (a /32 or /128). It refuses a prefix with host bits set
// (10.1.2.3/24), which usually hides a typo.
func ParseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("want a network such as 10.1.2.0/24 or an address, got %q", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("want a network such as 10.1.2.0/24, got %q", s)
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set; did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// smtpWarnings are the SMTP door's Warnings: each app network that may
// authenticate without TLS, because its passwords and tokens cross the
// network in clear text, and networks given while the door is off.
func (c *Config) smtpWarnings() []Problem {
	var out []Problem
	for i := range c.Apps {
		a := &c.Apps[i]
		for j, s := range a.SMTP.InsecureAuthNetworks {
			out = append(out, Problem{Key: fmt.Sprintf("%s.smtp.insecure_auth_networks[%d]", appKey(i, a), j),
				Message: fmt.Sprintf("clients from %s may send the app's SMTP password or token without TLS, readable by anyone on the path", s)})
		}
		if len(a.SMTP.Networks) > 0 && c.SMTP.Listen == "" {
			out = append(out, Problem{Key: appKey(i, a) + ".smtp.networks",
				Message: "set, but smtp.listen is not: the SMTP door is off"})
		}
	}
	return out
}
