package certreload

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailgate/mailgate/test/testpki"
)

// served returns the CN of the certificate GetCertificate hands out.
func served(t *testing.T, r *Reloader) string {
	t.Helper()
	c, err := r.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

// replace writes a new pair for cn the way certbot and Kubernetes do: to
// other files, renamed over the old ones.
func replace(t *testing.T, dir, cn string) {
	t.Helper()
	certPEM, keyPEM := testpki.SelfSigned(t, cn)
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		tmp := filepath.Join(dir, name+".new")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	testpki.WriteSelfSigned(t, certFile, keyFile, "first.contoso.com")
	r, err := New(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cn := served(t, r); cn != "first.contoso.com" {
		t.Fatalf("served %s", cn)
	}

	replace(t, dir, "second.contoso.com")
	if cn := served(t, r); cn != "second.contoso.com" {
		t.Fatalf("after replacing the files: served %s", cn)
	}

	// Rewritten in place (same files), as an operator's cp would.
	testpki.WriteSelfSigned(t, certFile, keyFile, "third-in-place.contoso.com")
	if cn := served(t, r); cn != "third-in-place.contoso.com" {
		t.Fatalf("after rewriting the files in place: served %s", cn)
	}

	// Half a renewal: a new key that does not match the certificate keeps
	// the last good pair in service; the finished renewal is picked up.
	_, otherKey := testpki.SelfSigned(t, "x")
	if err := os.WriteFile(keyFile+".new", otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(keyFile+".new", keyFile); err != nil {
		t.Fatal(err)
	}
	if cn := served(t, r); cn != "third-in-place.contoso.com" {
		t.Fatalf("with a mismatched pair: served %s", cn)
	}
	replace(t, dir, "fourth.contoso.com")
	if cn := served(t, r); cn != "fourth.contoso.com" {
		t.Fatalf("after the renewal finished: served %s", cn)
	}
}

func TestNewRefusesUnusablePair(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := New(certFile, keyFile, nil); err == nil {
		t.Fatal("missing files accepted")
	}
	if err := os.WriteFile(certFile, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(certFile, keyFile, nil); err == nil {
		t.Fatal("junk accepted")
	}
}
