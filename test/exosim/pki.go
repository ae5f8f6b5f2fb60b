package exosim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the simulator's throw-away certificate authority. It lives as long
// as one Sim; its files are written under dir, a test's temporary directory.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	caFile string
	server tls.Certificate
}

// certLifetime is long enough for any test and short enough that a leaked
// file is worthless.
const certLifetime = 24 * time.Hour

func newPKI(dir string) (*pki, error) {
	ca, caKey, err := newCA("exosim test CA")
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, ca: ca, caKey: caKey, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)

	p.caFile = filepath.Join(dir, "exosim-ca.pem")
	if err := os.WriteFile(p.caFile, pemBlock("CERTIFICATE", ca.Raw), 0o600); err != nil {
		return nil, fmt.Errorf("write CA file: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := leafTemplate("localhost", x509.ExtKeyUsageServerAuth)
	tmpl.DNSNames = []string{"localhost"}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create server certificate: %w", err)
	}
	p.server = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return p, nil
}

func newCA(cn string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"exosim"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func leafTemplate(cn string, usage x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
}

// clientCert issues a TLS client certificate with cn as both CN and DNS SAN,
// signed by ca, and writes the certificate and its PKCS #8 key as PEM files.
func (p *pki) clientCert(ca *x509.Certificate, caKey crypto.Signer, cn string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := leafTemplate(cn, x509.ExtKeyUsageClientAuth)
	tmpl.DNSNames = []string{cn}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("create client certificate: %w", err)
	}
	return p.writePair("client", der, key)
}

// appCert makes the self-signed RSA certificate an Entra app registration
// holds for client assertions. RSA because MSAL signs assertions only with
// RSA keys (PS256 or RS256).
func (p *pki) appCert(clientID string) (*x509.Certificate, string, string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, "", "", err
	}
	tmpl := leafTemplate(clientID, x509.ExtKeyUsageClientAuth)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, "", "", fmt.Errorf("create app certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, "", "", err
	}
	certFile, keyFile, err := p.writePair("app", der, key)
	return cert, certFile, keyFile, err
}

func (p *pki) writePair(prefix string, der []byte, key crypto.PrivateKey) (certFile, keyFile string, err error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, err = p.writeTemp(prefix+"-*.crt", pemBlock("CERTIFICATE", der))
	if err != nil {
		return "", "", err
	}
	keyFile, err = p.writeTemp(prefix+"-*.key", pemBlock("PRIVATE KEY", keyDER))
	return certFile, keyFile, err
}

func (p *pki) writeTemp(pattern string, data []byte) (string, error) {
	f, err := os.CreateTemp(p.dir, pattern)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return "", err
	}
	return f.Name(), f.Close()
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}
