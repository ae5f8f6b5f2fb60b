package sendmail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// serveSMTP is -bs: one SMTP session on stdin and stdout, which is how
// Symfony Mailer and Laravel talk to sendmail by default. go-smtp's server
// speaks the protocol; each message goes the way of any other (Prepare,
// then deliver), and the answer to DATA says what happened to it: 250 only
// when the server took it or it is spooled.
func serveSMTP(ctx context.Context, env Env, c Conf, spool Spool, client *Client) (int, error) {
	be := smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &smtpSession{ctx: ctx, env: env, conf: c, spool: spool, client: client}, nil
	})
	srv := smtp.NewServer(be)
	srv.Domain, _ = os.Hostname()
	if srv.Domain == "" {
		srv.Domain = "localhost"
	}
	srv.ErrorLog = log.New(env.Stderr, "mailgate sendmail: ", 0)
	srv.MaxLineLength = 2000
	l := newStdioListener(env.Stdin, env.Stdout)
	err := srv.Serve(l)
	// Serve returns once the session's connection is closed; Shutdown
	// waits for its handler to finish.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return ExitIOErr, err
	}
	return ExitOK, nil
}

type smtpSession struct {
	ctx    context.Context
	env    Env
	conf   Conf
	spool  Spool
	client *Client
	from   string
	to     []string
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	addrs, err := s.conf.Qualify(to)
	if err != nil {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: err.Error()}
	}
	s.to = append(s.to, addrs...)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	// Dots are unstuffed already; this only makes line ends CRLF.
	raw, err = ReadMessage(bytes.NewReader(raw), true)
	if err != nil {
		return err
	}
	p, err := Prepare(raw, Options{Recipients: s.to, Sender: s.from, IgnoreDots: true}, s.conf)
	if err != nil {
		return smtpError(exitFor(err), err.Error())
	}
	d := deliver(s.ctx, s.env, s.spool, s.client, p)
	if d.Err != nil {
		return smtpError(d.Code, d.Err.Error())
	}
	return nil
}

// smtpError is the SMTP reply for an exit status.
func smtpError(code int, reason string) error {
	reason = oneLine(reason)
	switch code {
	case ExitNoPerm:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: reason}
	case ExitDataErr, ExitUsage:
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: reason}
	case ExitNoUser:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: reason}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: reason}
}

// stdioListener hands out one connection made of stdin and stdout, then
// reports itself closed once that connection is.
type stdioListener struct {
	conn *stdioConn
	once sync.Once
}

func newStdioListener(in io.Reader, out io.Writer) *stdioListener {
	return &stdioListener{conn: &stdioConn{in: in, out: out, closed: make(chan struct{})}}
}

func (l *stdioListener) Accept() (net.Conn, error) {
	first := false
	l.once.Do(func() { first = true })
	if first {
		return l.conn, nil
	}
	<-l.conn.closed
	return nil, net.ErrClosed
}

func (l *stdioListener) Close() error   { return l.conn.Close() }
func (l *stdioListener) Addr() net.Addr { return stdioAddr{} }

type stdioConn struct {
	in        io.Reader
	out       io.Writer
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *stdioConn) Read(b []byte) (int, error)  { return c.in.Read(b) }
func (c *stdioConn) Write(b []byte) (int, error) { return c.out.Write(b) }
func (c *stdioConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}
func (c *stdioConn) LocalAddr() net.Addr              { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr             { return stdioAddr{} }
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdin" }
