package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/smtppass"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/postfixtest"
	"github.com/mailgate/mailgate/test/testbin"
	"github.com/mailgate/mailgate/test/testpki"
	"github.com/mailgate/mailgate/test/testwait"
)

// The SMTP door's tests. 127.0.0.1 is the scanner app's network (a device
// that cannot authenticate); 127.0.0.2 is in no app's networks, and
// 127.0.0.3 may authenticate without TLS. Linux routes all of 127/8 to the
// loopback interface, so a client picks its address by binding to it.
const (
	listedIP   = "127.0.0.1"
	unlistedIP = "127.0.0.2"
	clearIP    = "127.0.0.3"
)

// withSMTP turns on the SMTP door, with a certificate for STARTTLS and the
// implicit-TLS listener, and adds the scanner app.
func withSMTP(t *testing.T, mutate func(*config.Config)) func(*config.Config) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "smtp.crt"), filepath.Join(dir, "smtp.key")
	testpki.WriteSelfSigned(t, cert, key, "mailgate.test")
	return func(c *config.Config) {
		c.SMTP = config.SMTP{Listen: "127.0.0.1:0", ListenTLS: "127.0.0.1:0", Hostname: "mailgate.test",
			TLS: config.SMTPTLS{CertFile: cert, KeyFile: key}}
		c.Apps = append(c.Apps, config.App{ID: "scanner", Route: "m365",
			From: config.AppFrom{Default: "Scanner <scanner@alerts.contoso.com>", Allowed: []string{"scanner@alerts.contoso.com"}},
			SMTP: config.AppSMTP{Networks: []string{listedIP + "/32"}}})
		c.Apps[0].SMTP.InsecureAuthNetworks = []string{clearIP + "/32"}
		if mutate != nil {
			mutate(c)
		}
	}
}

// message is a complete message with the headers mailgate would otherwise
// add (Date, Message-ID, MIME-Version), so that what reaches Exchange must
// be exactly these bytes under mailgate's Received header. Its body has a
// line starting with a dot (dot-stuffed by every client and by the worker)
// and 8-bit text.
func message(from, to, tag string) string {
	return strings.ReplaceAll(`From: `+from+`
To: `+to+`
Subject: `+tag+`
Date: Tue, 01 Dec 2026 10:00:00 +0000
Message-ID: <`+tag+`@alerts.contoso.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Page 1 of the scan, Grüße.
.a line that starts with a dot
trailing spaces   
`, "\n", "\r\n")
}

var queuedAs = regexp.MustCompile(`250 2\.0\.0 OK queued as ([0-9a-z]{26})`)

// queuedID finds the id in a client's transcript.
func queuedID(t *testing.T, transcript string) string {
	t.Helper()
	m := queuedAs.FindStringSubmatch(transcript)
	if m == nil {
		t.Fatalf("no `250 2.0.0 OK queued as <id>` in the transcript:\n%s", transcript)
	}
	return m[1]
}

// wantDelivered waits for the message tagged tag at the simulator and
// checks that it is the bytes sent under one Received header naming the
// id, and that the status API reads sent.
func (e *env) wantDelivered(tok, id, tag, sent, proto string) {
	e.t.Helper()
	e.waitStatus(tok, id, "sent", 30*time.Second)
	var got string
	testwait.Until(e.t, 10*time.Second, func() bool {
		for _, m := range e.sim.Messages() {
			if strings.Contains(string(m.Data), "Subject: "+tag+"\r\n") {
				got = string(m.Data)
				return true
			}
		}
		return false
	}, "message %s at the simulator", tag)
	if !strings.HasPrefix(got, "Received: from ") {
		e.t.Fatalf("%s: no Received header on top:\n%s", tag, got)
	}
	end := 0
	for {
		i := strings.Index(got[end:], "\r\n")
		end += i + 2
		if i < 0 || end >= len(got) || (got[end] != ' ' && got[end] != '\t') {
			break
		}
	}
	received, rest := got[:end], got[end:]
	if !strings.Contains(received, "by mailgate.test (mailgate) with "+proto+" id "+id+";") &&
		!strings.Contains(received, "by mailgate.test (mailgate) with "+proto+" id "+id+"\r\n") {
		e.t.Errorf("%s: Received header does not name %s and id %s:\n%s", tag, proto, id, received)
	}
	if rest != sent {
		e.t.Fatalf("%s: the message changed on its way:\n--- sent\n%q\n--- delivered (under Received)\n%q", tag, sent, rest)
	}
}

// run runs a subtest with the env's helpers failing that subtest, not the
// whole test.
func (e *env) run(t *testing.T, name string, f func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		parent := e.t
		e.t = t
		defer func() { e.t = parent }()
		f(t)
	})
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runClient(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// issuePassword issues a short SMTP password as `mailgate smtp-password
// issue` does.
func (e *env) issuePassword(app string) string {
	e.t.Helper()
	pw, _, err := smtppass.New(e.redis.Client(), "mailgate", nil).Issue(context.Background(), app)
	if err != nil {
		e.t.Fatal(err)
	}
	return pw
}

// Real SMTP clients, each the way a device or an application uses them,
// deliver through the door byte for byte, and the status API follows the
// id of the 250 reply to sent.
func TestSMTPClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withSMTP(t, nil))
	e.start(gateway.RoleAll)
	swaks := testbin.Path(t, "swaks", "swaks")
	curl := testbin.Path(t, "curl", "curl")
	python := testbin.Path(t, "python3", "python3")
	monTok, scanTok := e.token("monitoring"), e.token("scanner")
	host, port, err := net.SplitHostPort(e.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	_, tlsPort, err := net.SplitHostPort(e.smtpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	alerts := "Alerts <alerts@alerts.contoso.com>"

	e.run(t, "swaks STARTTLS and AUTH PLAIN with the app token", func(t *testing.T) {
		msg := message(alerts, "ops@contoso.com", "swaks-token")
		out := runClient(t, swaks, "--server", host, "--port", port, "--tls", "--auth", "PLAIN",
			"--auth-user", "anything", "--auth-password", monTok, "--from", "alerts@alerts.contoso.com",
			"--to", "ops@contoso.com", "--data", writeFile(t, "m.eml", strings.TrimSuffix(msg, "\r\n")))
		e.wantDelivered(monTok, queuedID(t, out), "swaks-token", msg, "ESMTPSA")
	})
	e.run(t, "swaks STARTTLS and AUTH LOGIN with a short SMTP password", func(t *testing.T) {
		msg := message(alerts, "ops@contoso.com", "swaks-password")
		out := runClient(t, swaks, "--server", host, "--port", port, "--tls", "--auth", "LOGIN",
			"--auth-user", "scanner-3rd-floor", "--auth-password", e.issuePassword("monitoring"),
			"--from", "alerts@alerts.contoso.com", "--to", "ops@contoso.com", "--data", writeFile(t, "m.eml", strings.TrimSuffix(msg, "\r\n")))
		e.wantDelivered(monTok, queuedID(t, out), "swaks-password", msg, "ESMTPSA")
	})
	e.run(t, "swaks anonymous from the scanner's network", func(t *testing.T) {
		msg := message("Scanner <scanner@alerts.contoso.com>", "ops@contoso.com", "swaks-anonymous")
		out := runClient(t, swaks, "--server", host, "--port", port, "--local-interface", listedIP,
			"--from", "scanner@alerts.contoso.com", "--to", "ops@contoso.com", "--data", writeFile(t, "m.eml", strings.TrimSuffix(msg, "\r\n")))
		e.wantDelivered(scanTok, queuedID(t, out), "swaks-anonymous", msg, "ESMTP")
	})
	e.run(t, "curl smtp:// with STARTTLS and a short SMTP password", func(t *testing.T) {
		msg := message(alerts, "ops@contoso.com", "curl-password")
		out := runClient(t, curl, "--silent", "--show-error", "--verbose", "--url", "smtp://"+e.smtpAddr,
			"--ssl-reqd", "--insecure", "--user", "device:"+e.issuePassword("monitoring"),
			"--mail-from", "alerts@alerts.contoso.com", "--mail-rcpt", "ops@contoso.com",
			"--upload-file", writeFile(t, "m.eml", msg))
		e.wantDelivered(monTok, queuedID(t, out), "curl-password", msg, "ESMTPSA")
	})
	e.run(t, "python smtplib over implicit TLS with the app token", func(t *testing.T) {
		msg := message(alerts, "ops@contoso.com", "python-smtps")
		script := `
import smtplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL(sys.argv[1], int(sys.argv[2]), context=ctx)
s.login("app", sys.argv[3])
s.mail("alerts@alerts.contoso.com")
s.rcpt("ops@contoso.com")
code, reply = s.data(open(sys.argv[4], "rb").read())
print(code, reply.decode())
s.quit()
`
		out := runClient(t, python, "-c", script, host, tlsPort, monTok, writeFile(t, "m.eml", msg))
		e.wantDelivered(monTok, queuedID(t, out), "python-smtps", msg, "ESMTPSA")
	})
	e.run(t, "python smtplib in clear text from a network allowed to", func(t *testing.T) {
		msg := message(alerts, "ops@contoso.com", "python-clear")
		script := `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), source_address=(sys.argv[5], 0))
s.login("app", sys.argv[3])
s.mail("alerts@alerts.contoso.com")
s.rcpt("ops@contoso.com")
code, reply = s.data(open(sys.argv[4], "rb").read())
print(code, reply.decode())
s.quit()
`
		out := runClient(t, python, "-c", script, host, port, monTok, writeFile(t, "m.eml", msg), clearIP)
		e.wantDelivered(monTok, queuedID(t, out), "python-clear", msg, "ESMTPA")
	})
	e.run(t, "bare LF line ends make one message with CRLF", func(t *testing.T) {
		c := dialSMTP(t, e.smtpAddr, listedIP)
		c.send("EHLO scanner.lan", 250)
		c.send("MAIL FROM:<scanner@alerts.contoso.com>", 250)
		c.send("RCPT TO:<ops@contoso.com>", 250)
		c.send("DATA", 354)
		c.write("From: scanner@alerts.contoso.com\nTo: ops@contoso.com\nSubject: bare-lf\n\nline 1\nMAIL FROM:<ceo@contoso.com>\nline 3\r\n")
		_, reply := c.data("")
		id := queuedID(t, "250 "+reply)
		e.waitStatus(scanTok, id, "sent", 30*time.Second)
		var found int
		for _, m := range e.sim.Messages() {
			if strings.Contains(string(m.Data), "Subject: bare-lf\r\n") {
				found++
				if !strings.HasSuffix(string(m.Data), "\r\n\r\nline 1\r\nMAIL FROM:<ceo@contoso.com>\r\nline 3\r\n") {
					t.Errorf("body: %q", m.Data)
				}
			}
		}
		if found != 1 {
			t.Fatalf("%d messages with the subject at Exchange, want 1", found)
		}
	})
	e.run(t, "Bcc removed, Message-ID and Date added", func(t *testing.T) {
		sent := strings.ReplaceAll("From: Scanner <scanner@alerts.contoso.com>\nTo: ops@contoso.com\nBcc: boss@contoso.com\nSubject: no-ids\n\nscan\n", "\n", "\r\n")
		c := dialSMTP(t, e.smtpAddr, listedIP)
		c.send("EHLO scanner.lan", 250)
		c.send("MAIL FROM:<scanner@alerts.contoso.com>", 250)
		c.send("RCPT TO:<ops@contoso.com>", 250)
		c.send("RCPT TO:<boss@contoso.com>", 250)
		c.send("DATA", 354)
		_, reply := c.data(sent)
		id := queuedID(t, "250 "+reply)
		e.waitStatus(scanTok, id, "sent", 30*time.Second)
		var got string
		for _, m := range e.sim.Messages() {
			if strings.Contains(string(m.Data), "Subject: no-ids\r\n") {
				got = string(m.Data)
				if len(m.Rcpt) != 2 {
					t.Errorf("recipients at Exchange: %v, want both", m.Rcpt)
				}
			}
		}
		for _, want := range []string{"Received: from scanner.lan ([127.0.0.1])", "\r\nMessage-ID: <", "\r\nDate: "} {
			if !strings.Contains(got, want) {
				t.Errorf("delivered message lacks %q:\n%s", want, got)
			}
		}
		if strings.Contains(got, "Bcc") || strings.Contains(got, "boss@") {
			t.Errorf("the Bcc header reached Exchange:\n%s", got)
		}
		if !strings.HasSuffix(got, "Subject: no-ids\r\n\r\nscan\r\n") {
			t.Errorf("body changed:\n%q", got)
		}
		// Both doors share one accept step, so the submission counters
		// count what came in over SMTP too.
		m := string(e.do("GET", "/metrics", "", "", nil, nil).body)
		if want := `mailgate_submissions_total{app="scanner",result="accepted"}`; !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	})
}

// Everything the door must refuse is refused with the code a device log
// can explain, and nothing reaches the queue.
func TestSMTPRefusalsQueueNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withSMTP(t, func(c *config.Config) { c.SMTP.DataTimeout = time.Second }))
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")
	ctx := context.Background()
	revokedTok := e.token("monitoring")
	claims, err := e.tokens.Parse(revokedTok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := token.NewRevocations(e.redis.Client(), "mailgate", nil).Revoke(ctx, claims.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	revokedPw := e.issuePassword("monitoring")
	if _, err := smtppass.New(e.redis.Client(), "mailgate", nil).Revoke(ctx, revokedPw); err != nil {
		t.Fatal(err)
	}
	ok := message("Alerts <alerts@alerts.contoso.com>", "ops@contoso.com", "refused")

	// authed opens a STARTTLS session authenticated with the app token.
	authed := func(t *testing.T) *smtpClient {
		c := dialSMTP(t, e.smtpAddr, listedIP)
		c.send("EHLO client.lan", 250)
		c.startTLS()
		c.send("AUTH PLAIN "+plain(tok), 235)
		return c
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"no AUTH from an unlisted network", func(t *testing.T) {
			c := dialSMTP(t, e.smtpAddr, unlistedIP)
			c.send("EHLO printer.lan", 250)
			c.want("MAIL FROM:<scanner@alerts.contoso.com>", 530, "5.7.0")
			c.want("RCPT TO:<ops@contoso.com>", 502, "5.5.1") // no transaction
		}},
		{"AUTH before STARTTLS", func(t *testing.T) {
			c := dialSMTP(t, e.smtpAddr, listedIP)
			if ehlo := c.send("EHLO client.lan", 250); strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
				t.Fatalf("EHLO without TLS must offer STARTTLS and no AUTH:\n%s", ehlo)
			}
			c.want("AUTH PLAIN "+plain(tok), 538, "5.7.11")
		}},
		{"wrong password", func(t *testing.T) {
			c := dialSMTP(t, e.smtpAddr, unlistedIP)
			c.send("EHLO client.lan", 250)
			c.startTLS()
			c.want("AUTH PLAIN "+plain("mgs_aaaaaa_aaaaaaaaaaaaaaaaaaaa"), 535, "5.7.8")
			c.want("AUTH PLAIN "+plain(tok[:len(tok)-2]+"xx"), 535, "5.7.8")
			c.want("MAIL FROM:<alerts@alerts.contoso.com>", 530, "5.7.0")
		}},
		{"revoked token", func(t *testing.T) {
			c := dialSMTP(t, e.smtpAddr, unlistedIP)
			c.send("EHLO client.lan", 250)
			c.startTLS()
			c.want("AUTH PLAIN "+plain(revokedTok), 535, "5.7.8")
		}},
		{"revoked short password", func(t *testing.T) {
			c := dialSMTP(t, e.smtpAddr, unlistedIP)
			c.send("EHLO client.lan", 250)
			c.startTLS()
			c.want("AUTH LOGIN", 334, "")
			c.want(base64.StdEncoding.EncodeToString([]byte("device")), 334, "")
			c.want(base64.StdEncoding.EncodeToString([]byte(revokedPw)), 535, "5.7.8")
		}},
		{"a password revoked while its connection is open", func(t *testing.T) {
			pw := e.issuePassword("monitoring")
			c := dialSMTP(t, e.smtpAddr, unlistedIP)
			c.send("EHLO client.lan", 250)
			c.startTLS()
			c.send("AUTH PLAIN "+plain(pw), 235)
			if _, err := smtppass.New(e.redis.Client(), "mailgate", nil).Revoke(ctx, pw); err != nil {
				t.Fatal(err)
			}
			c.want("MAIL FROM:<alerts@alerts.contoso.com>", 535, "5.7.8")
		}},
		{"the token of a disabled app", func(t *testing.T) {
			c := dialSMTP(t, e.smtpAddr, unlistedIP)
			c.send("EHLO client.lan", 250)
			c.startTLS()
			c.want("AUTH PLAIN "+plain(e.token("retired")), 535, "5.7.8")
		}},
		{"MAIL FROM outside the policy", func(t *testing.T) {
			c := authed(t)
			c.want("MAIL FROM:<ceo@contoso.com>", 550, "5.7.1")
		}},
		{"From header outside the policy", func(t *testing.T) {
			c := authed(t)
			c.send("MAIL FROM:<alerts@alerts.contoso.com>", 250)
			c.send("RCPT TO:<ops@contoso.com>", 250)
			c.send("DATA", 354)
			c.wantData(strings.Replace(ok, "From: Alerts <alerts@alerts.contoso.com>", "From: CEO <ceo@contoso.com>", 1), 550, "5.7.1")
		}},
		{"Sender header outside the policy", func(t *testing.T) {
			c := authed(t)
			c.send("MAIL FROM:<alerts@alerts.contoso.com>", 250)
			c.send("RCPT TO:<ops@contoso.com>", 250)
			c.send("DATA", 354)
			c.wantData(strings.Replace(ok, "To: ", "Sender: ceo@contoso.com\r\nTo: ", 1), 550, "5.7.1")
		}},
		{"recipient outside the policy", func(t *testing.T) {
			c := authed(t)
			c.send("MAIL FROM:<alerts@alerts.contoso.com>", 250)
			c.want("RCPT TO:<someone@gmail.com>", 550, "5.7.1")
		}},
		{"too many recipients", func(t *testing.T) {
			c := authed(t)
			c.send("MAIL FROM:<alerts@alerts.contoso.com>", 250)
			for i := range 50 {
				c.send(fmt.Sprintf("RCPT TO:<u%d@contoso.com>", i), 250)
			}
			c.want("RCPT TO:<u50@contoso.com>", 452, "4.5.3")
			c.send("RSET", 250)
		}},
		{"too big, announced with SIZE", func(t *testing.T) {
			c := authed(t)
			if ehlo := c.send("EHLO client.lan", 250); !strings.Contains(ehlo, "SIZE ") {
				t.Fatalf("SIZE not advertised:\n%s", ehlo)
			}
			c.want("MAIL FROM:<alerts@alerts.contoso.com> SIZE=300000", 552, "5.3.4")
			c.want("MAIL FROM:<alerts@alerts.contoso.com> SIZE=40000000", 552, "5.3.4") // over smtp.max_message_bytes
		}},
		{"too big, not announced", func(t *testing.T) {
			c := authed(t)
			c.send("MAIL FROM:<alerts@alerts.contoso.com>", 250)
			c.send("RCPT TO:<ops@contoso.com>", 250)
			c.send("DATA", 354)
			c.wantData(ok+strings.Repeat(strings.Repeat("x", 998)+"\r\n", 300), 552, "5.3.4")
		}},
		{"SMTP smuggling", func(t *testing.T) {
			c := dialSMTP(t, e.smtpAddr, listedIP)
			c.send("EHLO scanner.lan", 250)
			c.send("MAIL FROM:<scanner@alerts.contoso.com>", 250)
			c.send("RCPT TO:<ops@contoso.com>", 250)
			c.send("DATA", 354)
			// The smuggled message has a sender nobody checked. If "\n.\r\n"
			// ended the first message, the server would answer its commands
			// (250s and a 354) before the final dot.
			smuggled := "From: Scanner <scanner@alerts.contoso.com>\r\nTo: ops@contoso.com\r\nSubject: carrier\r\n\r\ncarrier\n.\r\n" +
				"MAIL FROM:<ceo@contoso.com>\r\nRCPT TO:<ops@contoso.com>\r\nDATA\r\nFrom: ceo@contoso.com\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"
			c.wantData(smuggled, 554, "5.5.2")
			c.send("NOOP", 250) // in step: no smuggled command was answered
		}},
		{"a client stalling mid-DATA", func(t *testing.T) {
			c := authed(t)
			c.send("MAIL FROM:<alerts@alerts.contoso.com>", 250)
			c.send("RCPT TO:<ops@contoso.com>", 250)
			c.send("DATA", 354)
			c.write(ok[:100])
			code, msg := c.reply() // data_timeout is 1 s here
			if code != 421 || !strings.HasPrefix(msg, "4.4.2 ") {
				t.Fatalf("stalled DATA: %d %s, want 421 4.4.2", code, msg)
			}
			if _, err := c.tp.ReadLine(); err == nil {
				t.Fatal("the connection stayed open after the timeout")
			}
		}},
	}
	for _, tt := range tests {
		e.run(t, tt.name, func(t *testing.T) {
			tt.run(t)
			e.assertNothingQueued()
		})
	}
	e.sim.WaitIdle(t, 5*time.Second)
	if n := len(e.sim.Messages()); n != 0 {
		t.Fatalf("%d messages reached Exchange", n)
	}
	// The refusals are counted like the HTTP door's.
	m := string(e.do("GET", "/metrics", "", "", nil, nil).body)
	for _, want := range []string{
		`mailgate_smtp_auth_failures_total{reason="tls_required"} 1`,
		`mailgate_smtp_auth_failures_total{reason="token_revoked"} 1`,
		`mailgate_smtp_auth_failures_total{reason="password_unknown_or_revoked"} 2`,
		`mailgate_smtp_auth_failures_total{reason="app_disabled"} 1`,
		`mailgate_smtp_messages_total{app="",code="530"} 2`,
		`mailgate_smtp_messages_total{app="",code="535"} 1`,
		`mailgate_smtp_messages_total{app="monitoring",code="550"} 4`,
		// Two by the door (SIZE=300000 over the app's limit, a body too
		// big), one by go-smtp (SIZE= over smtp.max_message_bytes).
		`mailgate_smtp_messages_total{app="monitoring",code="552"} 3`,
		`mailgate_smtp_protocol_refusals_total{app="monitoring",code="552",reason="message_too_big"} 1`,
		`mailgate_smtp_messages_total{app="scanner",code="554"} 1`,
		`mailgate_smtp_connections_total{result="served"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(m, "mailgate_smtp_"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Redis becoming unreachable during DATA: the client hears 451 and nothing
// is half stored; once Redis is back, the same client's retry is accepted
// once.
//
// mailgate reaches Redis through a proxy that the test cuts, rather than by
// stopping redis-server: a stopped server's port can be taken by another
// socket of this busy machine before it starts again, which made the test
// flaky, while for mailgate a cut connection and a stopped server look the
// same (connection refused or reset).
func TestSMTPRedisDownDuringData(t *testing.T) {
	t.Parallel()
	var proxy *cutProxy
	e := newEnv(t, withSMTP(t, func(c *config.Config) {
		proxy = newCutProxy(t, strings.TrimSuffix(strings.TrimPrefix(c.Redis.URL, "redis://"), "/0"))
		c.Redis.URL = "redis://" + proxy.addr() + "/0"
	}))
	e.start(gateway.RoleAll)
	msg := message("Scanner <scanner@alerts.contoso.com>", "ops@contoso.com", "redis-down")
	c := dialSMTP(t, e.smtpAddr, listedIP)
	c.send("EHLO scanner.lan", 250)
	transaction := func() {
		c.send("MAIL FROM:<scanner@alerts.contoso.com>", 250)
		c.send("RCPT TO:<ops@contoso.com>", 250)
		c.send("DATA", 354)
		c.write(stuff(msg))
	}
	transaction()
	proxy.cut(true)
	code, reply := c.data("") // the end of data
	if code != 451 || !strings.HasPrefix(reply, "4.3.0 ") {
		t.Fatalf("with Redis unreachable: %d %s, want 451 4.3.0", code, reply)
	}
	e.assertNothingQueued()
	proxy.cut(false)
	transaction()
	code, reply = c.data("")
	id := queuedID(t, fmt.Sprintf("%d %s", code, reply))
	c.send("QUIT", 221)
	e.wantDelivered(e.token("scanner"), id, "redis-down", msg, "ESMTP")
	if n := len(e.sim.Messages()); n != 1 {
		t.Fatalf("%d messages at Exchange, want 1", n)
	}
}

// cutProxy forwards TCP connections to a server until it is cut: then it
// drops every connection and refuses new ones (accepts and closes them at
// once), keeping its port.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); p.cut(true) })
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.down { // cut while dialling
			p.mu.Unlock()
			c.Close()
			u.Close()
			continue
		}
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go func() { _, _ = io.Copy(u, c); u.Close() }()
		go func() { _, _ = io.Copy(c, u); c.Close() }()
	}
}

func (p *cutProxy) cut(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// The 101st connection from one address beyond a limit of 100 is refused
// with 421 4.7.0, while another address is served and can send; a slot
// freed is usable again.
func TestSMTPConnectionLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withSMTP(t, func(c *config.Config) {
		c.SMTP.MaxConnectionsPerIP, c.SMTP.MaxConnections = 100, 150
		c.App("scanner").SMTP.Networks = []string{"127.0.0.0/30"} // .1 and .2 are the scanner
		c.Apps[0].SMTP.InsecureAuthNetworks = nil
	}))
	e.start(gateway.RoleAPI)
	conns := make([]*smtpClient, 100)
	for i := range conns {
		conns[i] = dialSMTP(t, e.smtpAddr, listedIP)
	}
	refused := dialRaw(t, e.smtpAddr, listedIP)
	code, msg := refused.reply()
	if code != 421 || !strings.HasPrefix(msg, "4.7.0 ") {
		t.Fatalf("101st connection: %d %s, want 421 4.7.0", code, msg)
	}
	other := dialSMTP(t, e.smtpAddr, unlistedIP)
	other.send("EHLO scanner-2.lan", 250)
	other.send("MAIL FROM:<scanner@alerts.contoso.com>", 250)
	other.send("RCPT TO:<ops@contoso.com>", 250)
	other.send("DATA", 354)
	code, reply := other.data(message("Scanner <scanner@alerts.contoso.com>", "ops@contoso.com", "limits"))
	queuedID(t, fmt.Sprintf("%d %s", code, reply))
	conns[0].send("QUIT", 221)
	testwait.UntilNil(t, 10*time.Second, func() error {
		c := dialRaw(t, e.smtpAddr, listedIP)
		defer c.conn.Close()
		if code, msg := c.reply(); code != 220 {
			return fmt.Errorf("after a slot was freed: %d %s", code, msg)
		}
		return nil
	})
}

// smtpClient is a raw SMTP conversation, for the refusals no real client
// would make on purpose (smuggling, stalling, AUTH in clear text).
type smtpClient struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
}

func dialRaw(t *testing.T, addr, localIP string) *smtpClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &smtpClient{t: t, conn: conn, tp: textproto.NewConn(conn)}
}

// dialSMTP connects from localIP and expects the greeting.
func dialSMTP(t *testing.T, addr, localIP string) *smtpClient {
	t.Helper()
	c := dialRaw(t, addr, localIP)
	if code, msg := c.reply(); code != 220 {
		t.Fatalf("greeting: %d %s", code, msg)
	}
	return c
}

func (c *smtpClient) reply() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil && code == 0 {
		c.t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

func (c *smtpClient) write(s string) {
	c.t.Helper()
	if _, err := c.tp.W.WriteString(s); err != nil {
		c.t.Fatal(err)
	}
	if err := c.tp.W.Flush(); err != nil {
		c.t.Fatal(err)
	}
}

// send sends a command and fails unless the reply has code.
func (c *smtpClient) send(line string, code int) string {
	c.t.Helper()
	c.write(line + "\r\n")
	got, msg := c.reply()
	if got != code {
		c.t.Fatalf("%s: %d %s, want %d", line, got, msg, code)
	}
	return msg
}

// want sends a command and fails unless the reply has code and enhanced
// code ("" for none).
func (c *smtpClient) want(line string, code int, enhanced string) {
	c.t.Helper()
	msg := c.send(line, code)
	if enhanced != "" && !strings.HasPrefix(msg, enhanced+" ") {
		c.t.Fatalf("%s: %d %s, want %d %s", line, code, msg, code, enhanced)
	}
}

// data sends a message body (CRLF, dot-stuffed here) and the end of data.
func (c *smtpClient) data(body string) (int, string) {
	c.t.Helper()
	c.write(stuff(body) + ".\r\n")
	return c.reply()
}

// stuff dot-stuffs a body (RFC 5321 section 4.5.2).
func stuff(body string) string {
	s := strings.ReplaceAll(body, "\r\n.", "\r\n..")
	if strings.HasPrefix(s, ".") {
		s = "." + s
	}
	return s
}

func (c *smtpClient) wantData(body string, code int, enhanced string) {
	c.t.Helper()
	got, msg := c.data(body)
	if got != code || !strings.HasPrefix(msg, enhanced+" ") {
		c.t.Fatalf("end of data: %d %s, want %d %s", got, msg, code, enhanced)
	}
}

func (c *smtpClient) startTLS() {
	c.t.Helper()
	c.send("STARTTLS", 220)
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true}) // the test's self-signed certificate
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.tp = tc, textproto.NewConn(tc)
	c.send("EHLO client.lan", 250)
}

func plain(password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00user\x00" + password))
}

// The README's Postfix recipe: a Postfix relay (relayhost with SASL and
// mandatory TLS) forwards to mailgate with a short SMTP password; the
// message reaches Exchange unchanged, and Postfix's log names the id that
// mailgate's status API knows.
func TestSMTPPostfixRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withSMTP(t, nil))
	e.start(gateway.RoleAll)
	pw := e.issuePassword("monitoring")
	pf := postfixtest.Start(t, postfixtest.Options{RelayHost: e.smtpAddr, Main: map[string]string{
		"smtp_sasl_auth_enable":      "yes",
		"smtp_sasl_password_maps":    "static:relay:" + pw,
		"smtp_sasl_security_options": "noanonymous",
		"smtp_tls_security_level":    "encrypt",
	}})
	msg := message("Alerts <alerts@alerts.contoso.com>", "ops@contoso.com", "via-postfix")
	c := dialSMTP(t, pf.Addr(), listedIP)
	c.send("EHLO app.lan", 250)
	c.send("MAIL FROM:<alerts@alerts.contoso.com>", 250)
	c.send("RCPT TO:<ops@contoso.com>", 250)
	c.send("DATA", 354)
	if code, reply := c.data(msg); code != 250 {
		t.Fatalf("Postfix refused the message: %d %s", code, reply)
	}
	c.send("QUIT", 221)
	var id string
	testwait.Until(t, 30*time.Second, func() bool {
		m := queuedAs.FindStringSubmatch(pf.Log())
		if m != nil {
			id = m[1]
		}
		return m != nil
	}, "Postfix to relay the message to mailgate; mail log:\n%s", logString{pf.Log})
	e.wantDelivered(e.token("monitoring"), id, "via-postfix", msg, "ESMTPSA")
}

// logString prints a log when a wait fails (read then, not now).
type logString struct{ read func() string }

func (l logString) String() string { return l.read() }

// The refusals go-smtp answers itself, before the door decides anything
// (SIZE= over smtp.max_message_bytes, a recipient over smtp.max_recipients,
// malformed commands), show in /metrics by app, over STARTTLS and in
// clear, like the door's own.
func TestSMTPProtocolRefusalsInMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withSMTP(t, func(c *config.Config) { c.SMTP.MaxRecipients = 3 }))
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")

	c := dialSMTP(t, e.smtpAddr, unlistedIP)
	c.send("EHLO client.lan", 250)
	c.startTLS()
	c.send("AUTH PLAIN "+plain(tok), 235)
	c.want("MAIL FROM:<alerts@alerts.contoso.com> SIZE=40000000", 552, "5.3.4") // over smtp.max_message_bytes
	c.send("MAIL FROM:<alerts@alerts.contoso.com>", 250)
	for i := range 3 {
		c.send(fmt.Sprintf("RCPT TO:<u%d@contoso.com>", i), 250)
	}
	c.want("RCPT TO:<u3@contoso.com>", 452, "4.5.3")
	c.want("RCPT u4@contoso.com", 501, "5.5.2")
	c.want("MAIL FROM:<ceo@contoso.com>", 550, "5.7.1") // the door's own
	c.send("QUIT", 221)

	plainC := dialSMTP(t, e.smtpAddr, unlistedIP)
	plainC.want("XYZZ", 500, "5.5.2")
	plainC.send("QUIT", 221)

	want := []string{
		`mailgate_smtp_protocol_refusals_total{app="monitoring",code="552",reason="message_too_big"} 1`,
		`mailgate_smtp_protocol_refusals_total{app="monitoring",code="452",reason="too_many_recipients"} 1`,
		`mailgate_smtp_protocol_refusals_total{app="monitoring",code="501",reason="syntax"} 1`,
		`mailgate_smtp_protocol_refusals_total{app="",code="500",reason="syntax"} 1`,
		`mailgate_smtp_messages_total{app="monitoring",code="552"} 1`,
		`mailgate_smtp_messages_total{app="monitoring",code="452"} 1`,
		`mailgate_smtp_messages_total{app="monitoring",code="550"} 1`,
	}
	var m string
	testwait.Until(t, 5*time.Second, func() bool {
		m = string(e.do("GET", "/metrics", "", "", nil, nil).body)
		for _, w := range want {
			if !strings.Contains(m, w+"\n") {
				return false
			}
		}
		return true
	}, "the refusals in /metrics")
	if strings.Contains(m, `mailgate_smtp_protocol_refusals_total{app="monitoring",code="550"`) {
		t.Errorf("the door's own refusal counted as go-smtp's:\n%s", m)
	}
}
