package smtpd

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/internal/metrics"
)

// limitListener admits connections within smtp.max_connections overall and
// smtp.max_connections_per_ip per client address. A connection over a limit
// is answered 421 4.7.0 and closed by the listener itself, so it never
// reaches go-smtp and costs no session; everyone else is served as usual.
type limitListener struct {
	net.Listener
	*counts
	tls      bool // an implicit-TLS listener (for the log line)
	log      *slog.Logger
	metrics  *metrics.SMTP
	now      func() time.Time
	hostname string
	// appOf is the app whose smtp.networks hold an address, for the
	// metric of a refusal made before the client said who it is.
	appOf func(netip.Addr) string
}

// counts are the open connections of all of a server's listeners: the
// limits are the server's, whichever port a client uses.
type counts struct {
	total, perIP int

	mu    sync.Mutex
	open  int
	byIP  map[netip.Addr]int
	conns map[*trackedConn]struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		over := ""
		switch {
		case l.open >= l.total:
			over = "refused_total"
		case l.byIP[ip] >= l.perIP:
			over = "refused_per_ip"
		default:
			l.open++
			l.byIP[ip]++
		}
		l.mu.Unlock()
		if over != "" {
			l.metrics.Connection(over)
			go l.refuse(c, ip, over)
			continue
		}
		l.metrics.Connection("served")
		tc := &trackedConn{Conn: c, l: l, rec: &record{ip: ip, start: l.now(), implicitTLS: l.tls},
			closed: make(chan struct{}), replies: replyReader{atLineStart: true, off: l.tls},
			clear: replyReader{atLineStart: true}}
		l.mu.Lock()
		l.conns[tc] = struct{}{}
		l.mu.Unlock()
		return tc, nil
	}
}

// refuse answers a connection over a limit. RFC 5321 section 3.1 lets a
// server answer 421 instead of its greeting; 4.7.0 says it is a policy
// decision, and the client retries later. On an implicit-TLS listener the
// handshake has not happened, so the reply cannot be read: the connection
// is only closed.
func (l *limitListener) refuse(c net.Conn, ip netip.Addr, why string) {
	defer c.Close()
	msg := "421 4.7.0 " + l.hostname + " too many connections from your address, try again later\r\n"
	if why == "refused_total" {
		msg = "421 4.7.0 " + l.hostname + " too many connections, try again later\r\n"
	}
	if !l.tls {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second)) // a socket deadline: wall clock
		_, _ = c.Write([]byte(msg))
	}
	l.log.Warn("SMTP connection refused", "ip", ip.String(), "reason", strings.TrimPrefix(why, "refused_"),
		"max_connections", l.total, "max_connections_per_ip", l.perIP)
}

func (l *limitListener) release(tc *trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[tc]; !ok {
		return
	}
	delete(l.conns, tc)
	l.open--
	if l.byIP[tc.rec.ip]--; l.byIP[tc.rec.ip] <= 0 {
		delete(l.byIP, tc.rec.ip)
	}
}

// trackedConn is one served connection; it carries the record that its
// closing logs as one line.
type trackedConn struct {
	net.Conn
	l      *limitListener
	rec    *record
	once   sync.Once
	closed chan struct{}

	wmu sync.Mutex // writes may come from a BDAT session's goroutine too
	// replies reads what is written in clear on the socket; once TLS has
	// begun, clear reads go-smtp's Debug copy of it, and wrote tells that
	// copy's replies from the commands it also gets.
	replies replyReader
	clear   replyReader
	wrote   bool
}

// trackedOf is the served connection under c, which may be a TLS one.
func trackedOf(c net.Conn) *trackedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	return c.(*trackedConn)
}

// Write sends p to the client and notes the refusals that go-smtp made
// itself (replies.go).
func (c *trackedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n, err := c.Conn.Write(p)
	c.wrote = n > 0
	if rep, ok := c.replies.write(p[:n]); ok {
		c.noteReply(rep)
	}
	return n, err
}

func (c *trackedConn) noteReply(rep reply) {
	if rep.code >= 400 && !c.rec.takeOwn(rep.code) {
		c.protocolRefusal(rep)
	}
}

// clearReplies is go-smtp's Debug writer for one connection: it gets, in
// clear, every chunk go-smtp reads and, right after the socket write that
// sent it, every reply.
type clearReplies trackedConn

func (d *clearReplies) Write(p []byte) (int, error) {
	c := (*trackedConn)(d)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.replies.off || !c.wrote {
		// Before TLS the socket itself is read; without a write just
		// before, p is what the client sent.
		return len(p), nil
	}
	c.wrote = false
	if rep, ok := c.clear.write(p); ok {
		c.noteReply(rep)
	}
	return len(p), nil
}

// oneConn is a listener that yields one connection, then waits for its end:
// go-smtp serves a connection only through a listener.
type oneConn struct {
	c    net.Conn
	done <-chan struct{}
	once sync.Once
}

func (l *oneConn) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConn) Close() error   { return nil }
func (l *oneConn) Addr() net.Addr { return l.c.LocalAddr() }

func (c *trackedConn) protocolRefusal(rep reply) {
	reason := protocolReason(rep)
	var app string
	c.rec.set(func(r *record) {
		r.protoRefusals++
		if len(r.refusals) < 20 {
			r.refusals = append(r.refusals, "go-smtp "+rep.String()+" "+reason)
		}
		app = r.app
	})
	if app == "" && c.l.appOf != nil {
		app = c.l.appOf(c.rec.ip)
	}
	c.l.metrics.ProtocolRefusal(app, reason, rep.code)
	if reason == "message_too_big" || reason == "too_many_recipients" {
		// Counted with the door's own refusals of a message or recipient.
		c.l.metrics.Message(app, rep.code, 0)
	}
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		close(c.closed)
		c.l.release(c)
		c.l.metrics.Closed()
		c.rec.log(c.l.log, c.l.now())
	})
	return err
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// record is what happened on one connection, for its log line: who the
// client was, what it tried and why anything was refused. An administrator
// moving devices from an old relay reads it to see why one fails.
type record struct {
	ip          netip.Addr
	start       time.Time
	implicitTLS bool
	busy        atomic.Bool // inside a transaction (MAIL to the end of DATA)

	mu       sync.Mutex
	helo     string
	tls      bool
	auth     string // "" | token | password | network
	app      string
	queued   []string
	refusals []string
	// protoRefusals counts the refusals go-smtp made itself; own is the
	// code of the refusal the session is answering, which is not one of
	// them (0 once its reply was seen).
	protoRefusals int
	own           int
}

func (r *record) set(f func(r *record)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

// refused notes one refusal of the session: the command, the reply and
// the reason, and the reply's code, so that its reply is not counted again
// as go-smtp's.
func (r *record) refused(what string, code int) {
	r.set(func(r *record) {
		if len(r.refusals) < 20 {
			r.refusals = append(r.refusals, what)
		}
		r.own = code
	})
}

// takeOwn reports whether a reply with code is the refusal the session
// announced, and forgets it.
func (r *record) takeOwn(code int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.own != code {
		return false
	}
	r.own = 0
	return true
}

func (r *record) log(l *slog.Logger, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	auth := r.auth
	if auth == "" {
		auth = "none"
	}
	args := []any{"ip", r.ip.String(), "helo", r.helo, "tls", r.tls || r.implicitTLS, "auth", auth,
		"app", r.app, "queued", len(r.queued), "duration", now.Sub(r.start).Round(time.Millisecond).String()}
	if len(r.queued) > 0 {
		args = append(args, "ids", strings.Join(r.queued, ","))
	}
	if len(r.refusals) > 0 {
		args = append(args, "refused", strings.Join(r.refusals, "; "))
	}
	if r.protoRefusals > 0 {
		args = append(args, "protocol_refusals", r.protoRefusals)
	}
	if len(r.refusals) > 0 && len(r.queued) == 0 {
		l.Warn("SMTP connection closed", args...)
		return
	}
	l.Info("SMTP connection closed", args...)
}
