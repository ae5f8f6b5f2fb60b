package exosim

import (
	"errors"
	"net/textproto"
	"strings"
	"testing"

	"github.com/wneessen/go-mail/smtp"
)

// Dial connects to the simulator with go-mail's SMTP client, the one
// mailgate uses; the connection closes when the test ends.
func (s *Sim) Dial(tb testing.TB) *smtp.Client {
	tb.Helper()
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// DialTLS is Dial plus STARTTLS, trusting the simulator's CA.
func (s *Sim) DialTLS(tb testing.TB) *smtp.Client {
	tb.Helper()
	c := s.Dial(tb)
	if err := c.StartTLS(s.TLSConfig()); err != nil {
		tb.Fatalf("starttls: %v", err)
	}
	return c
}

// WantReply fails tb unless err is the SMTP reply code with the enhanced code.
func WantReply(tb testing.TB, err error, code int, enhanced string) {
	tb.Helper()
	var te *textproto.Error
	if !errors.As(err, &te) {
		tb.Fatalf("want %d %s, got %v", code, enhanced, err)
	}
	if te.Code != code || !strings.HasPrefix(te.Msg, enhanced+" ") {
		tb.Fatalf("want %d %s, got %d %s", code, enhanced, te.Code, te.Msg)
	}
}
