package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/test/testpki"
)

// With tls.cert_file and tls.key_file the API serves HTTPS, and a renewed
// certificate, renamed over the old files, is served from the next
// connection on without a restart.
func TestAPIServesHTTPSAndReloadsCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	firstPEM, firstKey := testpki.SelfSigned(t, "localhost")
	writePair(t, certFile, keyFile, firstPEM, firstKey)
	b := setup(t, nil, func(c *config.Config) {
		c.TLS = config.ListenerTLS{CertFile: certFile, KeyFile: keyFile}
		c.Metrics.Listen = "127.0.0.1:0"
	})
	g, err := b.newGateway(RoleAPI)
	if err != nil {
		t.Fatal(err)
	}
	b.run(t, g)

	secondPEM, secondKey := testpki.SelfSigned(t, "localhost")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(firstPEM)
	roots.AppendCertsFromPEM(secondPEM)
	// A new connection per request, so each one shows the certificate
	// served at that moment.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	servedPEM := func(url string) []byte {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", url, resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].Raw
	}
	first, second := der(t, firstPEM), der(t, secondPEM)

	if got := servedPEM("https://" + g.Addr() + "/healthz"); string(got) != string(first) {
		t.Fatal("the API does not serve the configured certificate")
	}
	if got := servedPEM("https://" + g.MetricsAddr() + "/metrics"); string(got) != string(first) {
		t.Fatal("metrics.listen does not serve the configured certificate")
	}
	if resp, err := http.Get("http://" + g.Addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served with tls set")
		}
	}

	for name, data := range map[string][]byte{certFile: secondPEM, keyFile: secondKey} {
		if err := os.WriteFile(name+".new", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(name+".new", name); err != nil {
			t.Fatal(err)
		}
	}
	if got := servedPEM("https://" + g.Addr() + "/healthz"); string(got) != string(second) {
		t.Fatal("the renewed certificate is not served after the files were replaced")
	}
}

func writePair(t *testing.T, certFile, keyFile string, certPEM, keyPEM []byte) {
	t.Helper()
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

// der returns the DER of the certificate in certPEM.
func der(t *testing.T, certPEM []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}
