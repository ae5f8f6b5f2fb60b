package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/mailgate/mailgate/internal/bodybudget"
	"github.com/mailgate/mailgate/internal/queue"
)

// Replies of the conversation. RFC 3463 and RFC 5321 give the codes: 530
// 5.7.0 for a command that needs authentication, 550 5.7.1 for a policy
// refusal, 552 5.3.4 for a message over the size limit, 452 4.5.3 for a
// recipient over the limit (RFC 5321 section 4.5.3.1.10), 451 4.3.0 for a
// server that cannot store the message now.
var (
	replyAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required: AUTH with the app's token or SMTP password, or send from a network configured for an app"}
	replySmuggling = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Message refused: a line holding only a dot next to a bare LF or CR (SMTP smuggling); send CRLF line ends"}
)

func policyRefusal(format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: fmt.Sprintf(format, args...)}
}

func queueUnavailable(id string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "The queue cannot take the message now; it was not stored, try again later (id " + id + ")"}
}

// session is one SMTP session; go-smtp starts a new one after STARTTLS.
type session struct {
	s    *Server
	conn *smtp.Conn
	rec  *record
	ip   netip.Addr
	tls  bool

	id        *identity
	authFails int

	// The transaction under way.
	app   App
	from  string
	rcpts []string
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	tc, ok := nc.(*trackedConn)
	if !ok {
		return nil, errors.New("connection not accepted by the SMTP door's listener")
	}
	_, isTLS := c.TLSConnectionState()
	tc.rec.set(func(r *record) { r.helo, r.tls = c.Hostname(), isTLS })
	return &session{s: s, conn: c, rec: tc.rec, ip: tc.rec.ip, tls: isTLS}, nil
}

func (ss *session) mayAuth() bool { return ss.tls || ss.s.insecureAuthAllowed(ss.ip) }

// AuthMechanisms offers AUTH only where it may be used, so a client
// without TLS sees STARTTLS but no AUTH in the EHLO reply.
func (ss *session) AuthMechanisms() []string {
	if !ss.mayAuth() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if !ss.mayAuth() {
		ss.refuse("AUTH", replyTLSFirst, "tls_required")
		return nil, replyTLSFirst
	}
	if ss.authFails >= maxAuthFailures {
		e := &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentications, closing"}
		ss.refuse("AUTH", e, "too_many_failures")
		ss.closeWith(e)
		return nil, e
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, _, password string) error { return ss.login(password) }), nil
	case sasl.Login:
		return &loginServer{callback: func(_, password string) error { return ss.login(password) }}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) login(password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, reason, err := ss.s.authenticate(ctx, password)
	if err != nil {
		ss.s.opts.Log.Error("SMTP AUTH: cannot verify credentials", "ip", ss.ip.String(), "err", err)
		ss.refuse("AUTH", replyAuthTemp, "unavailable (Redis)")
		return replyAuthTemp
	}
	if id == nil {
		ss.authFails++
		ss.refuse("AUTH", replyBadCredentials, reason)
		return replyBadCredentials
	}
	ss.id = id
	ss.rec.set(func(r *record) { r.auth, r.app = id.method, id.app })
	return nil
}

// refuse notes a refusal for the connection's log line and the metrics.
func (ss *session) refuse(cmd string, e *smtp.SMTPError, reason string) {
	line := fmt.Sprintf("%s %d %d.%d.%d %s", cmd, e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], reason)
	ss.rec.refused(line, e.Code)
	if cmd == "AUTH" {
		ss.s.opts.Metrics.AuthFailure(metricReason(reason))
	} else {
		ss.s.opts.Metrics.Message(ss.app.ID, e.Code, 0)
	}
}

// closeWith writes a last reply and closes the connection: after it, any
// byte the client still sends must not be read as a command.
func (ss *session) closeWith(e *smtp.SMTPError) {
	nc := ss.conn.Conn()
	_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = fmt.Fprintf(nc, "%d %d.%d.%d %s %s\r\n", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], ss.s.hostname, e.Message)
	_ = nc.Close()
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.resetTx()
	ss.setBusy(true)
	err := ss.mail(from, opts)
	if err != nil {
		ss.resetTx() // no transaction began
	}
	return err
}

func (ss *session) mail(from string, opts *smtp.MailOptions) error {
	cmd := "MAIL FROM:<" + from + ">"
	var appID string
	if ss.id != nil {
		// The credential may have been revoked since AUTH.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		reason, err := ss.id.check(ctx)
		cancel()
		switch {
		case err != nil:
			e := queueUnavailable("none")
			e.Message = "Cannot verify your credentials now, try again later"
			ss.refuse(cmd, e, "unavailable (Redis)")
			return e
		case reason != "":
			ss.refuse(cmd, replyBadCredentials, reason)
			return replyBadCredentials
		}
		appID = ss.id.app
	} else if appID = ss.s.appOfNetwork(ss.ip); appID == "" {
		ss.refuse(cmd, replyAuthRequired, "not authenticated and "+ss.ip.String()+" is in no app's smtp.networks")
		return replyAuthRequired
	} else {
		ss.rec.set(func(r *record) { r.auth, r.app = "network", appID })
	}
	app, ok := ss.s.opts.Door.App(appID)
	switch {
	case !ok:
		e := policyRefusal("App %s is not configured", appID)
		ss.refuse(cmd, e, "app_unknown")
		return e
	case app.Disabled:
		e := policyRefusal("App %s is disabled", appID)
		ss.refuse(cmd, e, "app_disabled")
		return e
	}
	ss.app = app
	if opts != nil && opts.Size > 0 {
		// RFC 1870: refuse a message announced too big before its body.
		if err := ss.s.opts.Door.CheckSize(app.ID, opts.Size); err != nil {
			return ss.doorError(fmt.Sprintf("%s SIZE=%d", cmd, opts.Size), err, "")
		}
	}
	if err := ss.s.opts.Door.CheckSender(app.ID, from); err != nil {
		return ss.doorError(cmd, err, "")
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	cmd := "RCPT TO:<" + to + ">"
	if ss.app.ID == "" {
		// go-smtp lets RCPT through when an earlier MAIL FROM of the
		// connection was accepted, even though a later one was refused and
		// ended that transaction: there is no sender to deliver for.
		ss.refuse(cmd, replyMailFirst, "no MAIL FROM in force: the last one was refused")
		return replyMailFirst
	}
	if err := ss.s.opts.Door.CheckRecipient(ss.app.ID, to, len(ss.rcpts)+1); err != nil {
		return ss.doorError(cmd, err, "")
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	now := ss.s.opts.Now()
	// The deadline covers the whole message: go-smtp's read timeout is per
	// command line, and a client that stalls mid-DATA must not hold its
	// slot longer than smtp.data_timeout.
	_ = ss.conn.Conn().SetReadDeadline(time.Now().Add(ss.s.cfg.DataTimeout))
	var buf bytes.Buffer
	var w io.Writer = &buf
	if ss.s.opts.Budget != nil {
		res := ss.s.opts.Budget.Grower(ss.app.ID)
		defer res.Release()
		w = &budgetedWriter{buf: &buf, res: res}
	}
	n, err := io.Copy(w, io.LimitReader(r, ss.app.MaxBytes+1))
	var ne net.Error
	var over *overBudget
	switch {
	case errors.As(err, &over):
		// The rest of the message is read and discarded by go-smtp.
		ss.refuse("DATA", replyBusy, over.Error())
		return replyBusy
	case errors.As(err, &ne) && ne.Timeout():
		e := &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
			Message: fmt.Sprintf("Timeout: no end of data within %s, closing; nothing was stored", ss.s.cfg.DataTimeout)}
		ss.refuse("DATA", e, "timeout")
		ss.closeWith(e)
		return e
	case errors.Is(err, smtp.ErrDataTooLarge):
		// Over smtp.max_message_bytes; go-smtp stopped reading it.
		e := &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
			Message: fmt.Sprintf("Message too big: at most %d bytes", ss.s.cfg.MaxMessageBytes)}
		ss.refuse("DATA", e, "over smtp.max_message_bytes")
		return e
	case n > ss.app.MaxBytes:
		// Reading stopped one byte over the app's limit, which keeps
		// memory bounded; the rest is read and discarded by go-smtp.
		return ss.doorError("DATA", ss.s.opts.Door.CheckSize(ss.app.ID, n), "")
	case err != nil:
		e := &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 0}, Message: "Connection error during DATA; nothing was stored"}
		ss.refuse("DATA", e, err.Error())
		return e
	}
	data := buf.Bytes()
	if smuggling(data) {
		ss.refuse("DATA", replySmuggling, "bare LF or CR around a lone dot")
		return replySmuggling
	}
	id := ss.s.opts.NewID(now)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stored, err := ss.s.opts.Door.Accept(ctx, Submission{App: ss.app.ID, ID: id, EnvelopeFrom: ss.from,
		Recipients: ss.rcpts, Raw: data, Now: now,
		Received: received(ss.conn.Hostname(), ss.ip, ss.s.hostname, ss.tls, ss.id != nil, id, ss.rcpts, now)})
	if err != nil {
		return ss.doorError("DATA", err, id)
	}
	ss.rec.set(func(r *record) { r.queued = append(r.queued, stored) })
	ss.s.opts.Metrics.Message(ss.app.ID, 250, len(data))
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + stored}
}

// doorError turns an error of the Door into the reply: its refusals as
// they are, anything else as 451 (the queue could not take the message).
func (ss *session) doorError(cmd string, err error, id string) error {
	var e *smtp.SMTPError
	if errors.As(err, &e) {
		ss.refuse(cmd, e, e.Message)
		return e
	}
	ss.s.opts.Log.Error("SMTP: could not queue a message", "app", ss.app.ID, "id", id, "err", err)
	e = queueUnavailable(id)
	var nr *queue.NotReplicatedError
	if errors.As(err, &nr) {
		// Stored on the Redis master but not yet on the replicas that
		// redis.min_replicas_acked asks for: not a 250, and not "not
		// stored" either. SMTP has no idempotency key, so the client's
		// retry is a second message; at-least-once, never a lost one.
		e.Message = "The message may be stored but is not yet replicated; try again later (it may then arrive twice; id " + id + ")"
	}
	ss.refuse(cmd, e, "queue unavailable: "+err.Error())
	return e
}

func (ss *session) resetTx() {
	ss.app, ss.from, ss.rcpts = App{}, "", nil
	ss.setBusy(false)
}

// setBusy marks the connection as inside a transaction or not; a shutdown
// closes the connections that are not.
func (ss *session) setBusy(b bool) { ss.rec.busy.Store(b) }

func (ss *session) Reset() { ss.resetTx() }

// Logout may run on another goroutine (a shutdown closing the connection),
// so it touches only what is atomic.
func (ss *session) Logout() error { ss.setBusy(false); return nil }

// replyMailFirst answers a recipient outside a transaction (RFC 5321
// section 4.1.4: RCPT needs a MAIL FROM first; RFC 3463 5.5.1).
var replyMailFirst = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
	Message: "Bad sequence of commands: send MAIL FROM first (the last MAIL FROM was refused)"}

// replyBusy answers a message that the memory budget cannot hold now: a
// temporary refusal (RFC 3463 4.3.1, mail system full), so the client
// sends it again later.
var replyBusy = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1},
	Message: "Insufficient system storage: too many messages are being received at once; nothing was stored, try again later"}

// budgetedWriter is a message's buffer that takes its room from the body
// budget as the message arrives, so the door holds no more bodies than the
// budget allows (an SMTP client rarely announces its size).
type budgetedWriter struct {
	buf *bytes.Buffer
	res *bodybudget.Reservation
}

func (w *budgetedWriter) Write(p []byte) (int, error) {
	if why := w.res.Grow(int64(w.buf.Len() + len(p))); why != bodybudget.OK {
		return 0, &overBudget{why}
	}
	return w.buf.Write(p)
}

// overBudget is a message refused by the body budget.
type overBudget struct{ why bodybudget.Refusal }

func (e *overBudget) Error() string {
	if e.why == bodybudget.AppShare {
		return "the app's share of the in-flight body budget is in use by its other messages"
	}
	return "the in-flight body budget is in use"
}
