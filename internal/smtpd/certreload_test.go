package smtpd

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/test/testpki"
)

// A renewed certificate, renamed over the configured files, is served from
// the next connection on, after STARTTLS and on the implicit-TLS listener,
// without a restart: devices keep sending through a renewal.
func TestRenewedCertificateServedWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	firstPEM, firstKey := testpki.SelfSigned(t, "mailgate.test")
	replace(t, certFile, firstPEM)
	replace(t, keyFile, firstKey)
	s, _ := startServerWith(t, func(o *Options) {
		o.Config.SMTP.ListenTLS = "127.0.0.1:0"
		o.Config.SMTP.TLS.CertFile, o.Config.SMTP.TLS.KeyFile = certFile, keyFile
	})

	secondPEM, secondKey := testpki.SelfSigned(t, "mailgate.test")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(firstPEM)
	roots.AppendCertsFromPEM(secondPEM)
	tlsConfig := &tls.Config{RootCAs: roots, ServerName: "mailgate.test"}
	startTLS := func() []byte {
		t.Helper()
		c, err := smtp.DialStartTLS(s.Addr(), tlsConfig)
		if err != nil {
			t.Fatalf("STARTTLS: %v", err)
		}
		defer c.Close()
		// The handshake happens with the first command after STARTTLS.
		if err := c.Noop(); err != nil {
			t.Fatalf("NOOP after STARTTLS: %v", err)
		}
		state, ok := c.TLSConnectionState()
		if !ok {
			t.Fatal("no TLS after STARTTLS")
		}
		return state.PeerCertificates[0].Raw
	}
	implicit := func() []byte {
		t.Helper()
		c, err := tls.Dial("tcp", s.TLSAddr(), tlsConfig)
		if err != nil {
			t.Fatalf("implicit TLS: %v", err)
		}
		defer c.Close()
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	first, second := derOf(t, firstPEM), derOf(t, secondPEM)
	if string(startTLS()) != string(first) || string(implicit()) != string(first) {
		t.Fatal("the door does not serve the configured certificate")
	}

	replace(t, certFile, secondPEM)
	replace(t, keyFile, secondKey)
	if string(startTLS()) != string(second) {
		t.Fatal("after STARTTLS the door still serves the old certificate after the files were replaced")
	}
	if string(implicit()) != string(second) {
		t.Fatal("the implicit-TLS listener still serves the old certificate after the files were replaced")
	}
}

// replace writes data to name as a renewal does: a new file renamed over
// the old one.
func replace(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name+".new", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(name+".new", name); err != nil {
		t.Fatal(err)
	}
}

func derOf(t *testing.T, certPEM []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}
