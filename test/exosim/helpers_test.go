package exosim_test

import (
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

// login is DialTLS plus AUTH PLAIN.
func login(t *testing.T, sim *exosim.Sim, user, pass string) *smtp.Client {
	t.Helper()
	c := sim.DialTLS(t)
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
