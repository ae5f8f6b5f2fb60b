package exosim_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/textproto"
	"strings"
	"testing"

	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/test/exosim"
)

func TestSubmissionRecordsExactBytes(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())

	c := sim.Dial(t)
	if err := c.Hello("gateway.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Error("STARTTLS not advertised before TLS")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH advertised before TLS")
	}
	if err := c.StartTLS(sim.TLSConfig()); err != nil {
		t.Fatal(err)
	}
	if state, _ := c.TLSConnectionState(); state.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x, want 1.2 or later", state.Version)
	}
	for ext, want := range map[string]string{
		"AUTH": "LOGIN PLAIN XOAUTH2", "SIZE": "36700160", "8BITMIME": "", "PIPELINING": "", "ENHANCEDSTATUSCODES": "",
	} {
		if ok, got := c.Extension(ext); !ok || got != want {
			t.Errorf("after TLS, EHLO %s = %v %q, want %q", ext, ok, got, want)
		}
	}
	if err := c.Auth(smtp.LoginAuth(relay, relayPW, sim.Host(), false)); err != nil {
		t.Fatal(err)
	}

	// A line starting with a dot is dot-stuffed on the wire and must come
	// back unstuffed; CRLF and 8-bit bytes must survive.
	data := "From: Help Desk <helpdesk@contoso.com>\r\nTo: ops@contoso.com\r\nSubject: exact\r\n\r\n.hidden\r\nünïcode\r\n..two\r\n"
	if err := send(c, "helpdesk@contoso.com", []string{"ops@contoso.com", "jane@contoso.com"}, data); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	msgs := sim.WaitForMessages(t, 1, waitLong)
	m := msgs[0]
	if !bytes.Equal(m.Data, []byte(data)) {
		t.Errorf("Data = %q, want %q", m.Data, data)
	}
	if m.From != "helpdesk@contoso.com" || m.AuthUser != relay || strings.Join(m.Rcpt, ",") != "ops@contoso.com,jane@contoso.com" {
		t.Errorf("envelope = %q %q %q", m.From, m.AuthUser, m.Rcpt)
	}
	if m.At.IsZero() {
		t.Error("At not set")
	}
}

func TestSubmissionRefusesOldTLS(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	cfg := sim.TLSConfig()
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if err := sim.Dial(t).StartTLS(cfg); err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
}

func TestSubmissionRefusesBeforeTLSAndAuth(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())

	t.Run("AUTH before STARTTLS", func(t *testing.T) {
		c := sim.Dial(t)
		// 127.0.0.1 counts as local for go-mail, so it sends PLAIN unencrypted.
		err := c.Auth(smtp.PlainAuth("", alice, alicePW, sim.Host(), false))
		exosim.WantReply(t, err, 530, "5.7.0")
	})
	t.Run("MAIL before STARTTLS", func(t *testing.T) {
		c := sim.Dial(t)
		exosim.WantReply(t, c.Mail("<"+alice+">"), 530, "5.7.0")
	})
	t.Run("MAIL before AUTH", func(t *testing.T) {
		c := sim.DialTLS(t)
		exosim.WantReply(t, c.Mail("<"+alice+">"), 530, "5.7.57")
	})
	if st := sim.Stats(); st.Messages != 0 || st.Replies["5.7.57"] != 1 || st.Replies["5.7.0"] != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestSubmissionBadPassword(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	for name, auth := range map[string]smtp.Auth{
		"LOGIN":           smtp.LoginAuth(alice, "wrong", sim.Host(), false),
		"PLAIN":           smtp.PlainAuth("", alice, "wrong", sim.Host(), false),
		"unknown mailbox": smtp.PlainAuth("", "nobody@contoso.com", alicePW, sim.Host(), false),
	} {
		t.Run(name, func(t *testing.T) {
			exosim.WantReply(t, sim.DialTLS(t).Auth(auth), 535, "5.7.3")
		})
	}
	if st := sim.Stats(); st.AuthFailures != 3 || st.Auths != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestSubmissionSendAs(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	tests := []struct {
		name       string
		user, pass string
		mailFrom   string
		headerFrom string
		wantCode   int
	}{
		{"own mailbox", alice, alicePW, alice, "Alice <" + alice + ">", 0},
		{"mailbox ignores case", alice, alicePW, "Alice@Contoso.com", alice, 0},
		{"exact send as", relay, relayPW, "helpdesk@contoso.com", "helpdesk@contoso.com", 0},
		{"domain send as", relay, relayPW, "disk@alerts.contoso.com", "disk@alerts.contoso.com", 0},
		{"envelope denied", alice, alicePW, "helpdesk@contoso.com", alice, 550},
		{"header denied", relay, relayPW, relay, "CEO <ceo@contoso.com>", 550},
		{"header denied among several", relay, relayPW, relay, relay + ", ceo@contoso.com", 550},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := login(t, sim, tt.user, tt.pass)
			err := send(c, tt.mailFrom, []string{"ops@contoso.com"}, message(tt.headerFrom))
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			exosim.WantReply(t, err, tt.wantCode, "5.7.60")
		})
	}
	if st := sim.Stats(); st.Messages != 4 || st.Replies["5.7.60"] != 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestScriptedThrottleThenSuccess(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	sim.Script(exosim.Reply{Stage: exosim.StageMail, Code: 451, Enhanced: "4.7.500", Text: "Server busy. Please try again later from [192.0.2.1]"})

	c := login(t, sim, alice, alicePW)
	exosim.WantReply(t, send(c, alice, []string{"ops@contoso.com"}, message(alice)), 451, "4.7.500")
	if err := send(c, alice, []string{"ops@contoso.com"}, message(alice)); err != nil {
		t.Fatalf("retry: %v", err)
	}
	sim.WaitForMessages(t, 1, waitLong)
	if st := sim.Stats(); st.Replies["4.7.500"] != 1 || st.Messages != 1 || sim.PendingScript() != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestScriptedRecipientRefusal(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	sim.Script(
		exosim.Reply{Stage: exosim.StageRcpt, Code: 250},
		exosim.Reply{Stage: exosim.StageRcpt, Code: 550, Enhanced: "5.1.10", Text: "RESOLVER.ADR.RecipientNotFound; Recipient gone@contoso.com not found by SMTP address lookup"},
	)
	c := login(t, sim, alice, alicePW)
	if err := c.Mail("<" + alice + ">"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("<ops@contoso.com>"); err != nil {
		t.Fatal(err)
	}
	exosim.WantReply(t, c.Rcpt("<gone@contoso.com>"), 550, "5.1.10")
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, message(alice)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sim.WaitForMessages(t, 1, waitLong)[0].Rcpt; len(got) != 1 || got[0] != "ops@contoso.com" {
		t.Errorf("Rcpt = %q", got)
	}
}

func TestScriptedDrop(t *testing.T) {
	t.Parallel()
	for _, stage := range []exosim.Stage{exosim.StageConnect, exosim.StageAuth, exosim.StageMail, exosim.StageRcpt, exosim.StageData} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			sim := exosim.Start(t, submissionOptions())
			sim.Script(exosim.Reply{Stage: stage, Drop: true})

			err := func() error {
				c, err := smtp.Dial(sim.Addr())
				if err != nil {
					return err
				}
				defer c.Close()
				if err := c.StartTLS(sim.TLSConfig()); err != nil {
					return err
				}
				if err := c.Auth(smtp.PlainAuth("", alice, alicePW, sim.Host(), false)); err != nil {
					return err
				}
				return send(c, alice, []string{"ops@contoso.com"}, message(alice))
			}()
			var reply *textproto.Error
			if err == nil || errors.As(err, &reply) {
				t.Fatalf("want a lost connection, got %v", err)
			}
			if sim.Stats().Drops != 1 {
				t.Errorf("Drops = %d", sim.Stats().Drops)
			}

			// The next connection is served normally.
			c := login(t, sim, alice, alicePW)
			if err := send(c, alice, []string{"ops@contoso.com"}, message(alice)); err != nil {
				t.Fatal(err)
			}
			if n := len(sim.WaitForMessages(t, 1, waitLong)); n != 1 {
				t.Errorf("%d messages, want only the second", n)
			}
		})
	}
}

func TestScriptedGreetingRefusal(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	sim.Script(exosim.Reply{Stage: exosim.StageConnect, Code: 421, Enhanced: "4.3.2", Text: "Service not available, closing transmission channel"})
	_, err := smtp.Dial(sim.Addr())
	exosim.WantReply(t, err, 421, "4.3.2")
	sim.WaitIdle(t, waitLong)
}

func TestMessageTooLarge(t *testing.T) {
	t.Parallel()
	opt := submissionOptions()
	opt.MaxMessageBytes = 1024
	sim := exosim.Start(t, opt)
	c := login(t, sim, alice, alicePW)
	err := send(c, alice, []string{"ops@contoso.com"}, message(alice)+strings.Repeat(strings.Repeat("x", 76)+"\r\n", 30))
	exosim.WantReply(t, err, 552, "5.3.4")
	// The session goes on after the refusal.
	if err := send(c, alice, []string{"ops@contoso.com"}, message(alice)); err != nil {
		t.Fatal(err)
	}
}
