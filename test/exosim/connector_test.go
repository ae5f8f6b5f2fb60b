package exosim_test

import (
	"crypto/tls"
	"testing"

	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/test/exosim"
)

func connectorOptions() exosim.Options {
	return exosim.Options{
		Mode:            exosim.ModeConnector,
		AcceptedDomains: []string{"contoso.com", "alerts.contoso.com"},
	}
}

// dialConnector connects and starts TLS, presenting the certificate in
// certFile and keyFile if certFile is not empty.
func dialConnector(t *testing.T, sim *exosim.Sim, certFile, keyFile string) *smtp.Client {
	t.Helper()
	cfg := sim.TLSConfig()
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	c := sim.Dial(t)
	if err := c.StartTLS(cfg); err != nil {
		t.Fatalf("starttls: %v", err)
	}
	return c
}

func TestConnectorAcceptedDomains(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, connectorOptions())

	t.Run("no AUTH and TLS first", func(t *testing.T) {
		c := sim.Dial(t)
		exosim.WantReply(t, c.Mail("<alerts@contoso.com>"), 451, "5.7.3")
		if err := c.StartTLS(sim.TLSConfig()); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Error("AUTH advertised on the connector endpoint")
		}
		exosim.WantReply(t, c.Auth(smtp.PlainAuth("", alice, alicePW, sim.Host(), false)), 504, "5.7.4")
	})

	tests := []struct {
		name, mailFrom, headerFrom string
		wantCode                   int
	}{
		{"accepted domain", "alerts@alerts.contoso.com", "Alerts <alerts@alerts.contoso.com>", 0},
		{"domain ignores case", "Ops@Contoso.COM", "ops@contoso.com", 0},
		{"envelope outside", "alerts@fabrikam.com", "alerts@contoso.com", 550},
		{"subdomain not accepted", "x@sub.contoso.com", "x@contoso.com", 550},
		{"header outside", "alerts@contoso.com", "alerts@fabrikam.com", 550},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := send(dialConnector(t, sim, "", ""), tt.mailFrom, []string{"ops@contoso.com"}, message(tt.headerFrom))
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			exosim.WantReply(t, err, tt.wantCode, "5.7.64")
		})
	}
	if st := sim.Stats(); st.Messages != 2 || st.Replies["5.7.64"] != 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestCertificateConnector(t *testing.T) {
	t.Parallel()
	opt := connectorOptions()
	opt.RequireClientCert = true
	opt.ConnectorCertName = "mailgate.contoso.com"
	sim := exosim.Start(t, opt)
	goodCert, goodKey := sim.ClientCert(t, "mailgate.contoso.com")
	otherCert, otherKey := sim.ClientCert(t, "someone.contoso.com")
	rogueCert, rogueKey := sim.UntrustedClientCert(t, "mailgate.contoso.com")

	tests := []struct {
		name              string
		certFile, keyFile string
		from              string
		ok                bool
	}{
		{"matching certificate, accepted domain", goodCert, goodKey, "alerts@contoso.com", true},
		{"matching certificate, other domain", goodCert, goodKey, "noreply@fabrikam.com", true},
		{"no certificate", "", "", "alerts@contoso.com", false},
		{"certificate for another name", otherCert, otherKey, "alerts@contoso.com", false},
		{"certificate from another CA", rogueCert, rogueKey, "alerts@contoso.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := send(dialConnector(t, sim, tt.certFile, tt.keyFile), tt.from, []string{"ops@contoso.com"}, message(tt.from))
			if !tt.ok {
				exosim.WantReply(t, err, 550, "5.7.64")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, m := range sim.WaitForMessages(t, 2, waitLong) {
		if m.ClientCert != "mailgate.contoso.com" || m.AuthUser != "" {
			t.Errorf("message from %s: ClientCert %q AuthUser %q", m.From, m.ClientCert, m.AuthUser)
		}
	}
}

func TestConnectorLimitsPerSender(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, connectorOptions())
	for range 3 {
		c := dialConnector(t, sim, "", "")
		if err := c.Mail("<alerts@contoso.com>"); err != nil {
			t.Fatal(err)
		}
	}
	exosim.WantReply(t, dialConnector(t, sim, "", "").Mail("<alerts@contoso.com>"), 432, "4.3.2")
	if err := send(dialConnector(t, sim, "", ""), "other@contoso.com", []string{"ops@contoso.com"}, message("other@contoso.com")); err != nil {
		t.Fatalf("another sender: %v", err)
	}
	if st := sim.Stats(); st.MaxConcurrent["alerts@contoso.com"] != 3 || st.MaxMessagesInAnyMinute["other@contoso.com"] != 1 {
		t.Errorf("stats = %+v", st)
	}
}
