package exosim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Sim is a running Exchange Online simulator. Its methods are safe for
// concurrent use.
type Sim struct {
	opt  Options
	tb   testing.TB
	pki  *pki
	srv  *smtp.Server
	ln   *listener
	addr *net.TCPAddr
	web  *httptest.Server

	served    chan struct{} // closed when srv.Serve returns
	closeOnce sync.Once
	quiet     atomic.Bool // set once Close is done: no more logging to tb

	script script
	limits *limiter
	tokens *tokenStore

	mu                sync.Mutex
	changed           chan struct{} // closed and replaced on every change, for waiters
	conns             map[*trackedConn]struct{}
	connections       int
	auths, authFails  int
	drops             int
	replies           map[string]int
	messages          []Message
	basicAuthDisabled bool
	smtpAuthOff       map[string]bool // "" is the tenant
}

// closeTimeout bounds how long Close waits for sessions to end.
const closeTimeout = 10 * time.Second

// Start runs a simulator on 127.0.0.1 and stops it when the test ends. It
// fails the test if opt is invalid or a server cannot start.
func Start(tb testing.TB, opt Options) *Sim {
	tb.Helper()
	opt = opt.withDefaults()
	if err := opt.validate(); err != nil {
		tb.Fatalf("exosim: invalid Options: %v", err)
	}
	p, err := newPKI(tb.TempDir())
	if err != nil {
		tb.Fatalf("exosim: certificates: %v", err)
	}
	s := &Sim{
		opt:         opt,
		tb:          tb,
		pki:         p,
		served:      make(chan struct{}),
		tokens:      newTokenStore(),
		changed:     make(chan struct{}),
		conns:       make(map[*trackedConn]struct{}),
		replies:     make(map[string]int),
		smtpAuthOff: make(map[string]bool),
	}

	s.limits = newLimiter(opt, s.notify)

	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "exosim.outlook.office365.com"
	if opt.Mode == ModeConnector {
		s.srv.Domain = "exosim.mail.protection.outlook.com"
	}
	s.srv.TLSConfig = s.smtpTLSConfig()
	// AUTH is advertised only after STARTTLS either way (AuthMechanisms);
	// allowing it lets an early AUTH reach the session and get Exchange's
	// 530 5.7.0 instead of go-smtp's 523 5.7.10.
	s.srv.AllowInsecureAuth = true
	s.srv.MaxMessageBytes = int64(opt.MaxMessageBytes)
	s.srv.ErrorLog = smtpLogger{s}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("exosim: listen: %v", err)
	}
	s.ln = &listener{Listener: ln, sim: s}
	s.addr = ln.Addr().(*net.TCPAddr)
	go func() {
		defer close(s.served)
		s.srv.Serve(s.ln)
	}()
	s.web = s.startTokenServer()
	tb.Cleanup(s.Close)
	return s
}

func (s *Sim) smtpTLSConfig() *tls.Config {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{s.pki.server},
		MinVersion:   tls.VersionTLS12, // Exchange Online refuses TLS 1.0 and 1.1
	}
	if s.opt.Mode == ModeConnector {
		// Ask for a certificate without judging it in the handshake: Exchange
		// completes TLS and refuses at MAIL FROM with 5.7.64.
		cfg.ClientAuth = tls.RequestClientCert
	}
	return cfg
}

// Close stops the simulator: no new connections, every open one closed, and
// it waits for every SMTP session to end. It fails the test if one does not
// end within 10 seconds. Start registers it with t.Cleanup; calling it again
// does nothing.
func (s *Sim) Close() {
	s.closeOnce.Do(func() {
		s.ln.Close()
		<-s.served // no Accept in flight: every connection is tracked
		s.mu.Lock()
		open := make([]*trackedConn, 0, len(s.conns))
		for c := range s.conns {
			open = append(open, c)
		}
		s.mu.Unlock()
		for _, c := range open {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := s.srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			s.tb.Errorf("exosim: SMTP sessions still running %v after Close", closeTimeout)
		}
		s.web.Close()
		s.quiet.Store(true)
	})
}

// Addr is the SMTP listener's "127.0.0.1:port".
func (s *Sim) Addr() string { return s.addr.String() }

// Host is "127.0.0.1", the name the server certificate is valid for (so is
// "localhost").
func (s *Sim) Host() string { return s.addr.IP.String() }

// Port is the SMTP listener's port.
func (s *Sim) Port() int { return s.addr.Port }

// CAFile is a PEM file with the simulator's CA certificate, for mailgate's
// tls.ca_file.
func (s *Sim) CAFile() string { return s.pki.caFile }

// CertPool holds the simulator's CA, for a tls.Config's RootCAs.
func (s *Sim) CertPool() *x509.CertPool { return s.pki.pool.Clone() }

// TLSConfig is a client configuration that trusts the simulator, for
// STARTTLS from a test's own client.
func (s *Sim) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CertPool(), ServerName: s.Host(), MinVersion: tls.VersionTLS12}
}

// ClientCert writes a TLS client certificate for cn (CN and DNS SAN) signed
// by the simulator's CA, and its key, as PEM files.
func (s *Sim) ClientCert(tb testing.TB, cn string) (certFile, keyFile string) {
	tb.Helper()
	certFile, keyFile, err := s.pki.clientCert(s.pki.ca, s.pki.caKey, cn)
	if err != nil {
		tb.Fatalf("exosim: client certificate: %v", err)
	}
	return certFile, keyFile
}

// UntrustedClientCert is ClientCert signed by a fresh CA that the simulator
// does not trust, for testing a refused certificate connector.
func (s *Sim) UntrustedClientCert(tb testing.TB, cn string) (certFile, keyFile string) {
	tb.Helper()
	ca, key, err := newCA("untrusted CA")
	if err == nil {
		certFile, keyFile, err = s.pki.clientCert(ca, key, cn)
	}
	if err != nil {
		tb.Fatalf("exosim: untrusted client certificate: %v", err)
	}
	return certFile, keyFile
}

func (s *Sim) track(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c, onClose: s.untrack}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connections++
	s.conns[tc] = struct{}{}
	s.broadcast()
	return tc
}

func (s *Sim) untrack(tc *trackedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, tc)
	s.broadcast()
}

func (s *Sim) logf(format string, args ...any) {
	s.tb.Helper()
	if !s.quiet.Load() {
		s.tb.Logf("exosim: "+format, args...)
	}
}

// smtpLogger sends go-smtp's internal errors to the test log.
type smtpLogger struct{ s *Sim }

func (l smtpLogger) Printf(format string, v ...any) { l.s.logf("smtp: "+format, v...) }
func (l smtpLogger) Println(v ...any)               { l.s.logf("smtp: %s", fmt.Sprintln(v...)) }
