package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/smtpreply"
)

// Stages of an SMTP exchange, for results and the route check.
const (
	StageConnect  = "connect"
	StageTLS      = "starttls"
	StageAuth     = "auth"
	StageMail     = "mail"
	StageRcpt     = "rcpt"
	StageData     = "data"
	StageGreeting = "ehlo"
)

// Dialer opens SMTP sessions to one route.
type Dialer struct {
	route     *config.Route
	tls       *tls.Config
	auth      Authenticator // nil for routes without AUTH
	hello     string
	connectTO time.Duration
	commandTO time.Duration
	retryAuth bool
	now       func() time.Time
}

// DialerOptions are the parts of the configuration a Dialer needs besides
// its route.
type DialerOptions struct {
	HelloName      string
	ConnectTimeout time.Duration
	CommandTimeout time.Duration
	Auth           Authenticator
	// RetryAuthOnce retries a refused AUTH once with fresh credentials
	// (for OAuth tokens, which the server may refuse before their expiry).
	RetryAuthOnce bool
	// Now is the clock of Conn.LastUsed, the worker's clock; time.Now when
	// nil. (Network deadlines are set on the wall clock, which is what the
	// operating system measures them with.)
	Now func() time.Time
}

// NewDialer prepares TLS for route once (CA file, client certificate), so a
// bad file is reported at startup rather than per message.
func NewDialer(route *config.Route, opts DialerOptions) (*Dialer, error) {
	tc, err := TLSConfig(route)
	if err != nil {
		return nil, err
	}
	hello := opts.HelloName
	if hello == "" {
		if h, err := os.Hostname(); err == nil {
			hello = h
		} else {
			hello = "localhost"
		}
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Dialer{route: route, tls: tc, auth: opts.Auth, hello: hello,
		connectTO: opts.ConnectTimeout, commandTO: opts.CommandTimeout, retryAuth: opts.RetryAuthOnce, now: opts.Now}, nil
}

// TLSConfig builds the client TLS configuration of route: TLS 1.2 or later,
// verified against the system roots plus tls.ca_file, with the client
// certificate of a certificate connector when one is configured.
func TLSConfig(route *config.Route) (*tls.Config, error) {
	tc := &tls.Config{
		ServerName:         route.Host,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: route.TLS.InsecureSkipVerify, //nolint:gosec // only when the operator asked for it
	}
	if route.TLS.ServerName != "" {
		tc.ServerName = route.TLS.ServerName
	}
	if route.TLS.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(route.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("route %s: tls.ca_file: %w", route.Name, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("route %s: tls.ca_file %s holds no PEM certificate", route.Name, route.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	if route.TLS.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(route.TLS.ClientCertFile, route.TLS.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("route %s: tls client certificate: %w", route.Name, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Conn is one SMTP session, authenticated as Mailbox when the route uses AUTH.
type Conn struct {
	c       *smtp.Client
	Mailbox string
	// LastUsed is when the session last carried a command, on the
	// Dialer's clock.
	LastUsed time.Time
	dialer   *Dialer
	// pipelining and mailParams come from the EHLO reply, which holds for
	// the whole session (the last EHLO is the one after STARTTLS), so they
	// are read once at Dial rather than for every message.
	pipelining bool
	mailParams string
}

// StepError is a failure at one stage of the exchange, with the server's
// reply when there was one.
type StepError struct {
	Stage string
	Reply *smtpreply.Reply // nil for network and TLS errors
	Err   error
}

func (e *StepError) Error() string {
	if e.Reply != nil {
		return fmt.Sprintf("%s: %s", e.Stage, e.Reply)
	}
	return fmt.Sprintf("%s: %v", e.Stage, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

func stepErr(stage string, err error) *StepError {
	se := &StepError{Stage: stage, Err: err}
	if r, ok := smtpreply.FromError(err); ok {
		se.Reply = &r
	}
	return se
}

// Step reports one completed step, for the route check's narration.
type Step struct {
	Stage  string
	Detail string
}

// Dial connects, says EHLO, starts TLS and authenticates as mailbox. Each
// step is reported to observe when it is not nil.
//
// A refused OAuth token may only have expired early: the authenticator is
// told, and one more connection is made with a fresh token (go-mail ends
// the session after a failed AUTH). Passwords are not retried, to keep the
// failure count of the mailbox low.
func (d *Dialer) Dial(ctx context.Context, mailbox string, observe func(Step)) (*Conn, error) {
	c, err := d.dial(ctx, mailbox, observe)
	var se *StepError
	if err != nil && d.retryAuth && errors.As(err, &se) && se.Stage == StageAuth && se.Reply != nil && se.Reply.Code == 535 {
		return d.dial(ctx, mailbox, observe)
	}
	return c, err
}

func (d *Dialer) dial(ctx context.Context, mailbox string, observe func(Step)) (*Conn, error) {
	if observe == nil {
		observe = func(Step) {}
	}
	addr := net.JoinHostPort(d.route.Host, strconv.Itoa(d.route.Port))
	nd := &net.Dialer{Timeout: d.connectTO}
	var raw net.Conn
	var err error
	if d.route.TLS.Mode == config.TLSImplicit {
		raw, err = (&tls.Dialer{NetDialer: nd, Config: d.tls}).DialContext(ctx, "tcp", addr)
	} else {
		raw, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, stepErr(StageConnect, err)
	}
	_ = raw.SetDeadline(time.Now().Add(d.commandTO))
	c, err := smtp.NewClient(raw, d.route.Host)
	if err != nil {
		raw.Close()
		return nil, stepErr(StageConnect, err)
	}
	observe(Step{StageConnect, "connected to " + addr})
	fail := func(stage string, err error) (*Conn, error) {
		c.Close()
		return nil, stepErr(stage, err)
	}
	if err := c.Hello(d.hello); err != nil {
		return fail(StageGreeting, err)
	}
	if err := c.UpdateDeadline(d.commandTO); err != nil {
		return fail(StageGreeting, err)
	}
	if d.route.TLS.Mode == config.TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fail(StageTLS, ErrNoStartTLS)
		}
		if err := c.StartTLS(d.tls); err != nil {
			return fail(StageTLS, err)
		}
		state, _ := c.TLSConnectionState()
		observe(Step{StageTLS, fmt.Sprintf("TLS %s with %s, certificate verified: %v",
			tls.VersionName(state.Version), d.tls.ServerName, !d.tls.InsecureSkipVerify)})
	}
	if d.auth != nil {
		a, err := d.auth.Auth(ctx, mailbox)
		if err != nil {
			return fail(StageAuth, err)
		}
		if err := c.Auth(a); err != nil {
			if _, isReply := smtpreply.FromError(err); isReply {
				d.auth.Refused(mailbox)
			}
			return fail(StageAuth, err)
		}
		observe(Step{StageAuth, "authenticated as " + mailbox})
	}
	pipelining, _ := c.Extension("PIPELINING")
	return &Conn{c: c, Mailbox: mailbox, LastUsed: d.now(), dialer: d,
		pipelining: pipelining, mailParams: mailParams(c)}, nil
}

// RecipientReply is a recipient refused at RCPT.
type RecipientReply struct {
	Recipient string
	Reply     smtpreply.Reply
}

// Result is what one transaction achieved.
type Result struct {
	// Reply is the final reply to DATA when the message was sent.
	Reply smtpreply.Reply
	// Accepted recipients got 2xx at RCPT; Refused did not.
	Accepted []string
	Refused  []RecipientReply
}

// Send runs one transaction: MAIL FROM, RCPT TO for each recipient, DATA with
// body exactly as stored. A refused recipient does not stop the others. The
// returned error is a *StepError when the transaction as a whole did not go
// through; the connection is then unusable if the error has no reply.
//
// When the server advertised PIPELINING the envelope goes out in one write
// (sendPipelined); otherwise command by command, each waiting for its reply.
func (c *Conn) Send(from string, rcpts []string, body []byte) (Result, error) {
	c.LastUsed = c.dialer.now()
	// An address with CR or LF would end the command early and smuggle a
	// second one in. go-mail's Mail and Rcpt refuse it; the pipelined path
	// writes commands itself, so both paths check here, before writing.
	if err := validLine(from); err != nil {
		return Result{}, stepErr(StageMail, err)
	}
	for _, r := range rcpts {
		if err := validLine(r); err != nil {
			return Result{}, stepErr(StageRcpt, err)
		}
	}
	if err := c.c.UpdateDeadline(c.dialer.commandTO); err != nil {
		return Result{}, stepErr(StageMail, err)
	}
	send := c.sendSerial
	if c.pipelining {
		send = c.sendPipelined
	}
	res, err := send(from, rcpts, body)
	if err == nil {
		c.LastUsed = c.dialer.now()
	}
	return res, err
}

// sendSerial is Send for a server without PIPELINING, through go-mail's
// client: each command waits for its reply, SMTP's "one command, one
// response" (RFC 2920 section 1).
func (c *Conn) sendSerial(from string, rcpts []string, body []byte) (Result, error) {
	var res Result
	if err := c.c.Mail(path(from)); err != nil {
		c.reset(err)
		return res, stepErr(StageMail, err)
	}
	for _, r := range rcpts {
		if err := c.c.Rcpt(path(r)); err != nil {
			reply, ok := smtpreply.FromError(err)
			if !ok {
				return res, stepErr(StageRcpt, err)
			}
			res.Refused = append(res.Refused, RecipientReply{Recipient: r, Reply: reply})
			continue
		}
		res.Accepted = append(res.Accepted, r)
	}
	if len(res.Accepted) == 0 {
		c.reset(nil)
		return res, nil
	}
	w, err := c.c.Data()
	if err != nil {
		c.reset(err)
		return res, stepErr(StageData, err)
	}
	if _, err := w.Write(body); err != nil {
		return res, stepErr(StageData, err)
	}
	if err := w.Close(); err != nil {
		c.reset(err)
		return res, stepErr(StageData, err)
	}
	// go-mail keeps only the text of the DATA reply; one that did not fail
	// was a 250.
	res.Reply = smtpreply.Parse(250, "")
	if dc, ok := w.(*smtp.DataCloser); ok {
		res.Reply = smtpreply.Parse(250, dc.ServerResponse())
	}
	return res, nil
}

// sendPipelined is Send for a server that advertised PIPELINING (RFC 2920):
// MAIL FROM, every RCPT TO and DATA leave in one write, their replies are
// read in order after it, then the body follows and its reply ends the
// transaction: two round trips a message instead of three plus one per
// recipient. DATA may only end a group (RFC 2920 section 3.1), so the body
// is never sent before the server said 354. The commands are written
// through go-mail's exported Text connection, the same one its own
// commands use, with the parameters its Mail would add (mailParams).
func (c *Conn) sendPipelined(from string, rcpts []string, body []byte) (Result, error) {
	var res Result
	t := c.c.Text
	fmt.Fprintf(t.W, "MAIL FROM:%s%s\r\n", path(from), c.mailParams)
	for _, r := range rcpts {
		fmt.Fprintf(t.W, "RCPT TO:%s\r\n", path(r))
	}
	t.W.WriteString("DATA\r\n")
	if err := t.W.Flush(); err != nil {
		return res, stepErr(StageMail, err)
	}

	// Every reply of the group is read whatever the earlier ones said
	// (RFC 2920 section 3.1: a client must check all of them), or the
	// next reply read would belong to the wrong command.
	_, _, mailErr := t.ReadResponse(250)
	if mailErr != nil {
		if _, ok := smtpreply.FromError(mailErr); ok {
			// The RCPTs and DATA after a refused MAIL fail too (503);
			// their replies only need reading.
			c.abandon(len(rcpts))
		}
		return res, stepErr(StageMail, mailErr)
	}
	for _, r := range rcpts {
		_, _, err := t.ReadResponse(25)
		if err == nil {
			res.Accepted = append(res.Accepted, r)
			continue
		}
		reply, ok := smtpreply.FromError(err)
		if !ok {
			return res, stepErr(StageRcpt, err)
		}
		res.Refused = append(res.Refused, RecipientReply{Recipient: r, Reply: reply})
	}
	if len(res.Accepted) == 0 {
		c.abandon(0)
		return res, nil
	}
	if _, _, err := t.ReadResponse(354); err != nil {
		c.reset(err)
		return res, stepErr(StageData, err)
	}

	dw := t.DotWriter()
	if _, err := dw.Write(body); err != nil {
		return res, stepErr(StageData, err)
	}
	if err := dw.Close(); err != nil {
		return res, stepErr(StageData, err)
	}
	code, msg, err := t.ReadResponse(250)
	if err != nil {
		c.reset(err)
		return res, stepErr(StageData, err)
	}
	res.Reply = smtpreply.Parse(code, msg)
	return res, nil
}

// abandon ends a pipelined transaction that will not carry the message: it
// reads the replies still due (rcpts RCPTs, then DATA) and says RSET. A
// server may answer DATA with 354 even though no recipient was accepted;
// RFC 2920 section 3.1 then has the client send a lone "." (an empty
// message, for nobody) before RSET.
// A network error leaves nothing to do: the caller's next command reports
// it, as it does after a failed RSET on the serial path.
func (c *Conn) abandon(rcpts int) {
	t := c.c.Text
	for range rcpts {
		if _, _, err := t.ReadResponse(25); !isReply(err) {
			return
		}
	}
	_, _, err := t.ReadResponse(354)
	if err == nil {
		if err := t.PrintfLine("."); err != nil {
			return
		}
		_, _, err = t.ReadResponse(250)
	}
	if isReply(err) {
		_ = c.c.Reset()
	}
}

// isReply reports whether err is nil or a server's reply, that is whether
// the session is still in step.
func isReply(err error) bool {
	_, ok := smtpreply.FromError(err)
	return err == nil || ok
}

// mailParams are the MAIL FROM parameters go-mail's Client.Mail adds, so
// that both paths send the same command: BODY=8BITMIME (RFC 6152) and
// SMTPUTF8 (RFC 6531) when the server offers them. go-mail would add RET=
// only with a DSN option, which mailgate never sets.
func mailParams(c *smtp.Client) string {
	var p string
	if ok, _ := c.Extension("8BITMIME"); ok {
		p += " BODY=8BITMIME"
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		p += " SMTPUTF8"
	}
	return p
}

// validLine refuses what go-mail's validateLine refuses: CR or LF in a
// command argument (RFC 5321 section 2.3.8).
func validLine(s string) error {
	if strings.ContainsAny(s, "\r\n") {
		return fmt.Errorf("%q: an address must not contain CR or LF", s)
	}
	return nil
}

// path writes an address as the reverse- or forward-path of RFC 5321
// (section 4.1.2): in angle brackets. go-mail sends MAIL FROM and RCPT TO
// arguments exactly as given; Exchange Online tolerates a bare address, but
// a strict server (Postfix with strict_rfc821_envelopes) answers 501 and the
// message would fail for good. The null sender "" becomes "<>".
func path(addr string) string { return "<" + addr + ">" }

// reset ends a failed transaction so the connection can carry the next
// one. After a network error there is nothing to reset.
func (c *Conn) reset(err error) {
	if err != nil {
		if _, ok := smtpreply.FromError(err); !ok {
			return
		}
	}
	_ = c.c.Reset()
}

// Close says QUIT and closes the connection.
func (c *Conn) Close() {
	_ = c.c.UpdateDeadline(5 * time.Second)
	if err := c.c.Quit(); err != nil {
		_ = c.c.Close()
	}
}

// Abort closes the connection without QUIT.
func (c *Conn) Abort() { _ = c.c.Close() }
