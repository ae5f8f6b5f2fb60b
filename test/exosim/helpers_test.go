package exosim_test

import (
	"crypto/tls"
	"errors"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/test/exosim"
)

const (
	alice    = "alice@contoso.com"
	alicePW  = "alice-password"
	relay    = "relay@contoso.com"
	relayPW  = "relay-password"
	waitLong = 10 * time.Second
)

// submissionOptions is a tenant with two mailboxes; relay holds Send As on
// helpdesk@ and on every address of alerts.contoso.com.
func submissionOptions() exosim.Options {
	return exosim.Options{
		Mailboxes: map[string]string{alice: alicePW, relay: relayPW},
		SendAs:    map[string][]string{relay: {"helpdesk@contoso.com", "*@alerts.contoso.com"}},
	}
}

// dial connects a go-mail SMTP client, the client mailgate uses, and closes
// it when the test ends.
func dial(t *testing.T, sim *exosim.Sim) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(sim.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialTLS is dial plus STARTTLS, trusting the simulator's CA.
func dialTLS(t *testing.T, sim *exosim.Sim) *smtp.Client {
	t.Helper()
	c := dial(t, sim)
	if err := c.StartTLS(&tls.Config{RootCAs: sim.CertPool(), ServerName: sim.Host()}); err != nil {
		t.Fatalf("starttls: %v", err)
	}
	return c
}

// login is dialTLS plus AUTH PLAIN.
func login(t *testing.T, sim *exosim.Sim, user, pass string) *smtp.Client {
	t.Helper()
	c := dialTLS(t, sim)
	if err := c.Auth(smtp.PlainAuth("", user, pass, sim.Host(), false)); err != nil {
		t.Fatalf("auth %s: %v", user, err)
	}
	return c
}

// send runs one transaction; the error is from the first command refused.
func send(c *smtp.Client, from string, to []string, data string) error {
	if err := c.Mail("<" + from + ">"); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt("<" + r + ">"); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(data)); err != nil {
		return err
	}
	return w.Close()
}

// message is a minimal message with the given header From.
func message(from string) string {
	return "From: " + from + "\r\nTo: ops@contoso.com\r\nSubject: test\r\n\r\nhello\r\n"
}

// wantReply fails unless err is the SMTP reply code with enhanced code.
func wantReply(t *testing.T, err error, code int, enhanced string) {
	t.Helper()
	var te *textproto.Error
	if !errors.As(err, &te) {
		t.Fatalf("want %d %s, got %v", code, enhanced, err)
	}
	if te.Code != code || !strings.HasPrefix(te.Msg, enhanced+" ") {
		t.Fatalf("want %d %s, got %d %s", code, enhanced, te.Code, te.Msg)
	}
}

// fakeClock is an Options.Now that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
