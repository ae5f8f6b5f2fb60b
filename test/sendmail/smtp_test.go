package sendmail

import (
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Symfony Mailer and Laravel run `sendmail -bs` and speak SMTP on its
// stdin and stdout: each DATA is answered with what mailgate did.
func TestSMTPOnStdio(t *testing.T) {
	s := startServer(t)
	tok := s.token("cron")
	in := invocation{conf: hostConf(t), url: s.base, tok: tok}

	cmd := exec.Command(sendmailLink, "-bs", "-i") // Laravel's default sendmail path
	cmd.Env = in.env(t)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(pipeConn{stdout, stdin})
	if err := c.Hello("web1"); err != nil {
		t.Fatal(err)
	}
	ok := "From: Shop <shop@alerts.contoso.com>\r\nTo: customer@example.com\r\nSubject: via -bs\r\n\r\n.leading dot\r\n"
	if err := c.SendMail("shop@alerts.contoso.com", []string{"customer@example.com", "ops@contoso.com"}, strings.NewReader(ok)); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	refused := "From: boss@contoso.com\r\nTo: customer@example.com\r\nSubject: not ours\r\n\r\nx\r\n"
	err = c.SendMail("boss@contoso.com", []string{"customer@example.com"}, strings.NewReader(refused))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || !strings.Contains(se.Message, "from_not_allowed") {
		t.Errorf("a From outside the policy: %v, want 550 from_not_allowed", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sendmail -bs: %v, stderr %q", err, stderr.String())
	}
	if stderr.String() != "" {
		t.Errorf("stderr %q, want nothing: the refusal went back over SMTP", stderr.String())
	}

	m := s.delivered(tok, "via -bs")
	checkDelivered(t, m.Data, m.Rcpt, []string{"customer@example.com", "ops@contoso.com"}, "shop@alerts.contoso.com")
	if !strings.Contains(string(m.Data), "\r\n\r\n.leading dot\r\n") {
		t.Errorf("the body's leading dot was not kept:\n%s", m.Data)
	}
	if n := s.queued(); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
}

// pipeConn is the client's end of a child's stdin and stdout.
type pipeConn struct {
	r io.Reader
	w io.WriteCloser
}

func (p pipeConn) Read(b []byte) (int, error)       { return p.r.Read(b) }
func (p pipeConn) Write(b []byte) (int, error)      { return p.w.Write(b) }
func (p pipeConn) Close() error                     { return p.w.Close() }
func (p pipeConn) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "client", Net: "unix"} }
func (p pipeConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "sendmail", Net: "unix"} }
func (p pipeConn) SetDeadline(time.Time) error      { return nil }
func (p pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p pipeConn) SetWriteDeadline(time.Time) error { return nil }
