package config

import (
	"strings"
	"testing"
)

// smtpYAML adds the contract's smtp section to the example, with two apps
// on the door, and uses the bundle's certificate for STARTTLS.
const smtpYAML = exampleYAML + `  - id: scanner
    route: relay
    from: {default: scanner@alerts.contoso.com}
    smtp:
      networks: ["10.100.102.3/32", "10.100.103.0/24"]
      insecure_auth_networks: ["10.100.102.0/24"]
smtp:
  listen: ":2525"
  listen_tls: ":465"
  hostname: relay.contoso.com
  tls: {cert_file: "{{DIR}}/relay.crt", key_file: "{{DIR}}/relay.key"}
  max_message_bytes: 36700160
  max_recipients: 100
  max_connections: 1000
  max_connections_per_ip: 100
`

func TestSMTPConfig(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.load(t, smtpYAML)
	s := c.SMTP
	if s.Listen != ":2525" || s.ListenTLS != ":465" || s.Hostname != "relay.contoso.com" || s.MaxRecipients != 100 ||
		s.ReadTimeout != DefaultSMTPReadTimeout || s.DataTimeout != DefaultSMTPDataTimeout || s.WriteTimeout != DefaultSMTPWriteTimeout {
		t.Fatalf("smtp section: %+v", s)
	}
	if got := c.App("scanner").SMTP.Networks; len(got) != 2 {
		t.Fatalf("scanner networks: %v", got)
	}
	w := c.Warnings()
	if len(w) != 1 || w[0].Key != "apps[scanner].smtp.insecure_auth_networks[0]" || !strings.Contains(w[0].Message, "without TLS") {
		t.Fatalf("warnings: %v", w)
	}
}

func TestSMTPValidate(t *testing.T) {
	t.Parallel()
	scanner := func(c *Config) *App { return c.App("scanner") }
	tests := []struct {
		name   string
		change func(c *Config)
		key    string
		want   []string
	}{
		{"listen", func(c *Config) { c.SMTP.Listen = "2525" }, "smtp.listen", []string{"want host:port"}},
		{"listen_tls alone", func(c *Config) { c.SMTP.Listen = "" }, "smtp.listen", []string{"required when smtp.listen_tls"}},
		{"listen_tls without cert", func(c *Config) { c.SMTP.TLS = SMTPTLS{} }, "smtp.tls.cert_file", []string{"implicit TLS needs"}},
		{"key without cert", func(c *Config) { c.SMTP.TLS.CertFile = "" }, "smtp.tls.cert_file", []string{"key_file is set but cert_file is not"}},
		{"cert missing", func(c *Config) { c.SMTP.TLS.CertFile = "/nonexistent.crt" }, "smtp.tls.cert_file", []string{"cannot read"}},
		{"hostname", func(c *Config) { c.SMTP.Hostname = "relay contoso" }, "smtp.hostname", []string{"want a host name"}},
		{"max recipients", func(c *Config) { c.SMTP.MaxRecipients = -1 }, "smtp.max_recipients", []string{"must be positive"}},
		{"per ip above total", func(c *Config) { c.SMTP.MaxConnections = 10 }, "smtp.max_connections_per_ip", []string{"more than smtp.max_connections (10)"}},
		{"data timeout", func(c *Config) { c.SMTP.DataTimeout = -1 }, "smtp.data_timeout", []string{"must be positive"}},
		{"network syntax", func(c *Config) { scanner(c).SMTP.Networks[0] = "10.100.102.300" }, "apps[scanner].smtp.networks[0]", []string{"want a network"}},
		{"network host bits", func(c *Config) { scanner(c).SMTP.Networks[1] = "10.100.103.7/24" }, "apps[scanner].smtp.networks[1]", []string{"did you mean 10.100.103.0/24"}},
		{"insecure network syntax", func(c *Config) { scanner(c).SMTP.InsecureAuthNetworks[0] = "lan" }, "apps[scanner].smtp.insecure_auth_networks[0]", []string{"want a network"}},
		// Never two apps for one address: a device without AUTH is known
		// only by its address.
		{"overlap between apps", func(c *Config) {
			c.App("monitoring").SMTP.Networks = []string{"10.100.0.0/16"}
		}, "apps[scanner].smtp.networks[0]", []string{"overlaps 10.100.0.0/16 of app monitoring"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			c := b.load(t, smtpYAML)
			tt.change(c)
			wantProblem(t, c.Validate(), tt.key, tt.want...)
		})
	}
}

func TestParseNetwork(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"10.0.0.1":            "10.0.0.1/32",
		"10.0.0.0/8":          "10.0.0.0/8",
		"2001:db8::/32":       "2001:db8::/32",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		" 192.168.1.0/24 ":    "192.168.1.0/24",
	} {
		p, err := ParseNetwork(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseNetwork(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
}
