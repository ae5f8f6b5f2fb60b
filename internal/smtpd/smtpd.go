// Package smtpd is mailgate's SMTP door: devices and applications that can
// only speak SMTP (scanners, line-of-business apps with an "SMTP server"
// field, old relays) submit through it with the same per-app identity,
// policy and durable queue as the HTTP API. It is built on emersion/go-smtp's
// server; this package decides who the client is and what it may send, and
// hands the message to the same accept step as POST /v1/messages/raw (Door).
//
// Who is who: AUTH PLAIN or LOGIN with the app's token or a short SMTP
// password (package smtppass) as the password, any user name; or, for a
// device that cannot authenticate, the app whose smtp.networks holds the
// client's address (config validation keeps an address in one app at most).
// Anyone else can send nothing: MAIL FROM is answered 530 5.7.0. AUTH is
// offered and accepted only over TLS (STARTTLS, or the implicit-TLS
// listener), except from an app's smtp.insecure_auth_networks.
//
// 250 means stored: the reply to the end of DATA comes after the atomic
// enqueue and names the id the status API knows (RFC 5321 section 4.1.1.4
// lets the reply text say anything; "queued as" is what Postfix says).
//
// Bytes are kept as received, rendered by the rules of the raw API (Bcc and
// the trace fields a client sent removed, Message-ID and Date added when
// missing), with mailgate's Received header on top (RFC 5321 section 4.4).
// go-smtp ends DATA only at CRLF.CRLF, so a bare LF or CR
// never ends a message here; but mailgate stores messages with CRLF line
// ends and a downstream server could then read a bare-LF-dot line as the
// end of the message (SMTP smuggling, CVE-2023-51766). A message holding a
// lone dot next to a bare LF or CR is therefore refused (message.go).
//
// Every connection is logged once, when it ends, with the client's
// address, its authentication, TLS, the ids queued and each refusal with
// its reason, including those go-smtp answers itself before the session
// sees the command (replies.go): the line an administrator retiring a
// relay reads to see why a device fails.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/internal/bodybudget"
	"github.com/mailgate/mailgate/internal/certreload"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/metrics"
	"github.com/mailgate/mailgate/internal/smtppass"
	"github.com/mailgate/mailgate/internal/token"
)

// Options configure a Server.
type Options struct {
	Config    *config.Config
	Door      Door
	Tokens    *token.Manager
	Passwords *smtppass.Verifier
	Metrics   *metrics.SMTP
	Log       *slog.Logger
	Now       func() time.Time
	// NewID returns a new message id (queue.NewID).
	NewID func(now time.Time) string
	// Budget, shared with the HTTP API, bounds the message bodies held in
	// memory at once; a message is counted as it arrives. nil: no bound but
	// the connection limits.
	Budget *bodybudget.Budget
}

// Server is the SMTP door: one go-smtp server per listener (the plain one
// and, when configured, the implicit-TLS one).
type Server struct {
	opts     Options
	cfg      config.SMTP
	hostname string
	tls      *tls.Config
	networks []appNetwork
	insecure []appNetwork

	listeners []*limitListener
	counts    *counts // shared by the listeners
}

type appNetwork struct {
	prefix netip.Prefix
	app    string
}

// New prepares a Server and opens its listeners, so that their addresses
// are known before Serve.
func New(o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfg := o.Config.SMTP
	s := &Server{opts: o, cfg: cfg, hostname: cfg.Hostname}
	if s.hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		s.hostname = h
	}
	if cfg.TLS.CertFile != "" {
		// A renewed certificate (certbot, a Kubernetes secret update) is
		// served from the next handshake on, as on the HTTPS listener:
		// devices keep connecting through a renewal without a restart.
		certs, err := certreload.New(cfg.TLS.CertFile, cfg.TLS.KeyFile, o.Log)
		if err != nil {
			return nil, fmt.Errorf("smtp.tls: %w", err)
		}
		s.tls = &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	for _, a := range o.Config.Apps {
		for _, n := range a.SMTP.Networks {
			p, err := config.ParseNetwork(n)
			if err != nil {
				return nil, fmt.Errorf("apps[%s].smtp.networks: %w", a.ID, err)
			}
			s.networks = append(s.networks, appNetwork{p, a.ID})
		}
		for _, n := range a.SMTP.InsecureAuthNetworks {
			p, err := config.ParseNetwork(n)
			if err != nil {
				return nil, fmt.Errorf("apps[%s].smtp.insecure_auth_networks: %w", a.ID, err)
			}
			s.insecure = append(s.insecure, appNetwork{p, a.ID})
		}
	}
	if err := s.listen(cfg.Listen, false); err != nil {
		return nil, err
	}
	if cfg.ListenTLS != "" {
		if err := s.listen(cfg.ListenTLS, true); err != nil {
			s.closeListeners()
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) listen(addr string, implicitTLS bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("SMTP: listen on %s: %w", addr, err)
	}
	if s.counts == nil {
		s.counts = &counts{total: s.cfg.MaxConnections, perIP: s.cfg.MaxConnectionsPerIP,
			byIP: map[netip.Addr]int{}, conns: map[*trackedConn]struct{}{}}
	}
	s.listeners = append(s.listeners, &limitListener{Listener: ln, counts: s.counts, tls: implicitTLS,
		log: s.opts.Log, metrics: s.opts.Metrics, now: s.opts.Now, hostname: s.hostname, appOf: s.appOfNetwork})
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.Close()
	}
}

// Addr is the plain listener's address.
func (s *Server) Addr() string { return s.listeners[0].Addr().String() }

// TLSAddr is the implicit-TLS listener's address, "" without one.
func (s *Server) TLSAddr() string {
	if len(s.listeners) < 2 {
		return ""
	}
	return s.listeners[1].Addr().String()
}

func (s *Server) newSMTPServer() *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = s.hostname
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.ReadTimeout = s.cfg.ReadTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	srv.TLSConfig = s.tls
	// Whether AUTH may happen without TLS depends on the client's network,
	// which go-smtp's switch cannot express: the session decides
	// (AuthMechanisms, Auth).
	srv.AllowInsecureAuth = true
	srv.ErrorLog = slogLogger{s.opts.Log}
	return srv
}

// Serve serves every listener until Shutdown, and returns the first error
// of a listener that failed for another reason.
func (s *Server) Serve() error {
	errs := make(chan error, len(s.listeners))
	for _, l := range s.listeners {
		var ln net.Listener = l
		if l.tls {
			ln = tls.NewListener(l, s.tls)
		}
		go func() { errs <- s.serve(ln) }()
	}
	var first error
	for range s.listeners {
		if err := <-errs; err != nil && !errors.Is(err, net.ErrClosed) && first == nil {
			first = err
			s.closeListeners()
		}
	}
	return first
}

// serve gives each connection of ln its own go-smtp server, because a
// server's Debug writer is the only place where go-smtp shows the replies
// it writes in clear text once TLS has begun (replies.go); a server is a
// small struct and Serve a goroutine waiting for the connection's end.
func (s *Server) serve(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		var te interface{ Temporary() bool }
		if errors.As(err, &te) && te.Temporary() {
			// Out of file descriptors and the like: wait as net/http and
			// go-smtp do.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.opts.Log.Warn("SMTP: accept failed, retrying", "err", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		if err != nil {
			return err
		}
		delay = 0
		tc := trackedOf(c)
		srv := s.newSMTPServer()
		srv.Debug = (*clearReplies)(tc)
		go func() { _ = srv.Serve(&oneConn{c: c, done: tc.closed}) }()
	}
}

// Shutdown stops accepting connections, lets transactions under way (MAIL
// to the end of DATA) finish until ctx is done, and closes every
// connection; the error says when transactions had to be cut. An idle client is not waited for: it reconnects elsewhere. A
// transaction cut this way was not answered 250, so its client sends it
// again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeListeners()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var err error
	for busy := s.closeIdle(); busy > 0 && err == nil; busy = s.closeIdle() {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("%d SMTP transactions cut: %w", busy, ctx.Err())
		case <-t.C:
		}
	}
	s.closeAll()
	return err
}

// closeIdle closes every connection not inside a transaction and returns
// how many are.
func (s *Server) closeIdle() int {
	s.counts.mu.Lock()
	var idle []*trackedConn
	busy := 0
	for c := range s.counts.conns {
		if c.rec.busy.Load() {
			busy++
		} else {
			idle = append(idle, c)
		}
	}
	s.counts.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
	return busy
}

// closeAll closes every connection still open; go-smtp then ends its
// session.
func (s *Server) closeAll() {
	s.counts.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.counts.conns))
	for c := range s.counts.conns {
		conns = append(conns, c)
	}
	s.counts.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// appOfNetwork returns the app whose smtp.networks holds ip.
func (s *Server) appOfNetwork(ip netip.Addr) string {
	for _, n := range s.networks {
		if n.prefix.Contains(ip) {
			return n.app
		}
	}
	return ""
}

func (s *Server) insecureAuthAllowed(ip netip.Addr) bool {
	for _, n := range s.insecure {
		if n.prefix.Contains(ip) {
			return true
		}
	}
	return false
}

// slogLogger sends go-smtp's own error reports (failed handshakes, broken
// connections) to the process log.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) { l.l.Debug("SMTP: " + fmt.Sprintf(format, v...)) }
func (l slogLogger) Println(v ...any)               { l.l.Debug("SMTP: " + fmt.Sprintln(v...)) }
