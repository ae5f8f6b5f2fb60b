// Package certreload serves a TLS certificate from a certificate file and a
// key file that may be replaced while the process runs: by certbot, by a
// Kubernetes secret update, by an operator. A renewed certificate is picked
// up at the next TLS handshake, with no restart and no dropped connection.
//
// At each handshake both files are looked at (os.Stat: no reading, no
// parsing); only when one has changed — another file, as an atomic rename
// or a symlink swap makes it, or a new modification time or size — is the
// pair loaded again. A pair that does not load (the key written before the
// certificate, say) leaves the last good certificate in service and is
// tried again when the files change next.
package certreload

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// Reloader holds the current certificate of a file pair.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	certStat os.FileInfo
	keyStat  os.FileInfo
}

// New loads the pair once; an unusable pair is an error, so a bad file is
// found at startup rather than at the first client.
func New(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	cs, ks, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file and tls.key_file: %w", err)
	}
	r.cert, r.certStat, r.keyStat = &cert, cs, ks
	return r, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs, ks, err := r.stat()
	if err != nil {
		// A file being replaced may be missing for a moment.
		return r.cert, nil
	}
	if same(cs, r.certStat) && same(ks, r.keyStat) {
		return r.cert, nil
	}
	r.certStat, r.keyStat = cs, ks
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.log.Warn("the changed TLS certificate or key does not load; still serving the previous certificate",
			"cert_file", r.certFile, "key_file", r.keyFile, "err", err)
		return r.cert, nil
	}
	r.cert = &cert
	r.log.Info("TLS certificate reloaded", "cert_file", r.certFile)
	return r.cert, nil
}

func (r *Reloader) stat() (cert, key os.FileInfo, err error) {
	if cert, err = os.Stat(r.certFile); err != nil {
		return nil, nil, fmt.Errorf("tls.cert_file: %w", err)
	}
	if key, err = os.Stat(r.keyFile); err != nil {
		return nil, nil, fmt.Errorf("tls.key_file: %w", err)
	}
	return cert, key, nil
}

func same(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}
