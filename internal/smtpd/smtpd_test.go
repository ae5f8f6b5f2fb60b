package smtpd

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/textproto"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailgate/mailgate/internal/bodybudget"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/metrics"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/syncbuf"
	"github.com/mailgate/mailgate/test/testpki"
	"github.com/mailgate/mailgate/test/testwait"
)

// fakeDoor stands in for the accept step: this file tests the
// conversation and its log line, not policy or storage.
type fakeDoor struct{ accepted []Submission }

func (d *fakeDoor) App(id string) (App, bool) {
	return App{ID: id, MaxBytes: 1 << 10}, id == "scanner"
}
func (d *fakeDoor) CheckSender(app, addr string) error {
	if !strings.HasSuffix(addr, "@contoso.com") {
		return policyRefusal("Sender <%s> not allowed", addr)
	}
	return nil
}
func (d *fakeDoor) CheckRecipient(string, string, int) error { return nil }
func (d *fakeDoor) CheckSize(string, int64) error            { return nil }
func (d *fakeDoor) Accept(_ context.Context, s Submission) (string, error) {
	d.accepted = append(d.accepted, s)
	return s.ID, nil
}

func startServer(t *testing.T) (*Server, *syncbuf.Buffer) {
	t.Helper()
	return startServerWith(t, nil)
}

// startServerWith is startServer with a change to the options first.
func startServerWith(t *testing.T, change func(*Options)) (*Server, *syncbuf.Buffer) {
	t.Helper()
	cfg := &config.Config{Apps: []config.App{{ID: "scanner", SMTP: config.AppSMTP{Networks: []string{"127.0.0.1/32"}}}}}
	cfg.SMTP.Listen = "127.0.0.1:0"
	cfg.SMTP.Hostname = "mailgate.test"
	cfg.WithDefaults()
	tokens, err := token.New(token.Options{Key: []byte(strings.Repeat("k", 32)), Issuer: "mailgate", Audience: "mailgate.test"})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	o := Options{Config: cfg, Door: &fakeDoor{}, Tokens: tokens, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		NewID: func(time.Time) string { return "id0001" }}
	if change != nil {
		change(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, &logs
}

func converse(t *testing.T, addr, local string, lines ...string) []string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	tp := textproto.NewConn(conn)
	var replies []string
	read := func() {
		code, msg, err := tp.ReadResponse(0)
		if err != nil && code == 0 {
			t.Fatalf("read: %v", err)
		}
		replies = append(replies, strings.TrimSpace(strings.SplitN(msg, "\n", 2)[0]))
		replies[len(replies)-1] = strconv.Itoa(code) + " " + replies[len(replies)-1]
	}
	read()
	for _, l := range lines {
		if err := tp.PrintfLine("%s", l); err != nil {
			t.Fatal(err)
		}
		read()
	}
	return replies
}

// Each connection ends with one log line saying who the client was and
// why anything was refused: what an administrator reads when a device
// that used the old relay fails.
func TestConnectionLogLine(t *testing.T) {
	t.Parallel()
	s, logs := startServer(t)
	replies := converse(t, s.Addr(), "127.0.0.2", "EHLO printer.lan", "MAIL FROM:<scan@contoso.com>", "QUIT")
	if !strings.HasPrefix(replies[2], "530 5.7.0 ") {
		t.Fatalf("replies: %q", replies)
	}
	testwait.Until(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "SMTP connection closed") },
		"the connection's log line")
	line := logs.String()
	for _, want := range []string{"level=WARN", "ip=127.0.0.2", "helo=printer.lan", "tls=false", "auth=none", "queued=0",
		`refused="MAIL FROM:<scan@contoso.com> 530 5.7.0 not authenticated and 127.0.0.2 is in no app's smtp.networks"`} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s:\n%s", want, line)
		}
	}
	if n := strings.Count(line, "SMTP connection closed"); n != 1 {
		t.Errorf("%d log lines for one connection:\n%s", n, line)
	}
}

func TestConnectionLogLineQueued(t *testing.T) {
	t.Parallel()
	s, logs := startServer(t)
	replies := converse(t, s.Addr(), "127.0.0.1", "EHLO scanner.lan", "MAIL FROM:<evil@example.com>",
		"MAIL FROM:<scan@contoso.com>", "RCPT TO:<a@contoso.com>", "DATA", "Subject: x\r\n\r\nhi\r\n.", "QUIT")
	if !strings.HasPrefix(replies[2], "550 5.7.1 ") || replies[6] != "250 2.0.0 OK queued as id0001" {
		t.Fatalf("replies: %q", replies)
	}
	testwait.Until(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "SMTP connection closed") },
		"the connection's log line")
	for _, want := range []string{"level=INFO", "auth=network", "app=scanner", "queued=1", "ids=id0001",
		`refused="MAIL FROM:<evil@example.com> 550 5.7.1 Sender <evil@example.com> not allowed"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log line lacks %s:\n%s", want, logs.String())
		}
	}
}

var _ smtp.Session = (*session)(nil)

// A stop lets a transaction under way finish (its client gets its 250),
// and does not wait for idle connections, which it closes.
func TestShutdownFinishesTransactions(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	dial := func() *textproto.Conn {
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
		tp := textproto.NewConn(conn)
		if _, _, err := tp.ReadResponse(220); err != nil {
			t.Fatal(err)
		}
		return tp
	}
	cmd := func(tp *textproto.Conn, line string, code int) string {
		t.Helper()
		if err := tp.PrintfLine("%s", line); err != nil {
			t.Fatal(err)
		}
		_, msg, err := tp.ReadResponse(code)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return msg
	}
	idle, busy := dial(), dial()
	cmd(idle, "EHLO idle.lan", 250)
	cmd(busy, "EHLO busy.lan", 250)
	cmd(busy, "MAIL FROM:<scan@contoso.com>", 250)
	cmd(busy, "RCPT TO:<a@contoso.com>", 250)
	cmd(busy, "DATA", 354)

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		stopped <- s.Shutdown(ctx)
	}()
	if _, err := idle.ReadLine(); err == nil {
		t.Fatal("the idle connection was not closed")
	}
	if msg := cmd(busy, "Subject: x\r\n\r\nhi\r\n.", 250); !strings.HasPrefix(msg, "2.0.0 OK queued as ") {
		t.Fatalf("the transaction under way: %s", msg)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A message the shared body budget cannot hold is refused for now (452
// 4.3.1) and nothing is accepted; a message that fits goes through, and the
// budget is given back after each.
func TestBodyBudgetRefusesWhatDoesNotFit(t *testing.T) {
	t.Parallel()
	budget := bodybudget.New(600, 600)
	// Another door's request holds half of it.
	release, why := budget.Reserve("other", 300)
	if why != bodybudget.OK {
		t.Fatal(why)
	}
	defer release()
	door := &fakeDoor{}
	s, _ := startServerWith(t, func(o *Options) { o.Budget = budget; o.Door = door })
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n", 12) + "."
	replies := converse(t, s.Addr(), "127.0.0.1", "EHLO scanner.lan", "MAIL FROM:<scan@contoso.com>",
		"RCPT TO:<a@contoso.com>", "DATA", big,
		"MAIL FROM:<scan@contoso.com>", "RCPT TO:<a@contoso.com>", "DATA", "Subject: small\r\n\r\nhi\r\n.", "QUIT")
	if !strings.HasPrefix(replies[5], "452 4.3.1 ") || replies[9] != "250 2.0.0 OK queued as id0001" {
		t.Fatalf("replies: %q", replies)
	}
	if len(door.accepted) != 1 || !strings.Contains(string(door.accepted[0].Raw), "Subject: small") {
		t.Fatalf("accepted %d messages, want only the small one", len(door.accepted))
	}
	if all, mine := budget.InUse("scanner"); all != 300 || mine != 0 {
		t.Fatalf("%d bytes of the budget held after the messages (%d by the door's app), want only the other's 300", all, mine)
	}
}

// The refusals go-smtp answers itself, before the session sees the
// command, are counted and logged like the door's own, and the door's own
// are not counted twice.
func TestProtocolRefusalsCountedAndLogged(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	s, logs := startServerWith(t, func(o *Options) {
		o.Metrics = metrics.NewSMTP(reg)
		o.Config.SMTP.MaxRecipients = 2
		o.Config.SMTP.MaxMessageBytes = 10000
	})
	replies := converse(t, s.Addr(), "127.0.0.1", "EHLO scanner.lan",
		"MAIL FROM:<scan@contoso.com> SIZE=20000", // go-smtp: 552
		"MAIL FROM:<scan@contoso.com>", "RCPT TO:<a@contoso.com>", "RCPT TO:<b@contoso.com>",
		"RCPT TO:<c@contoso.com>",              // go-smtp: 452
		"RSET", "MAIL FROM:<evil@example.com>", // the door: 550
		"RCPT TO:<c@contoso.com>", // go-smtp: 502, no transaction
		"XYZZY now",               // go-smtp: 501
		"QUIT")
	want := []string{"552 5.3.4", "250", "250", "250", "452 4.5.3", "250", "550 5.7.1", "502 5.5.1", "501 5.5.2"}
	for i, w := range want {
		if !strings.HasPrefix(replies[i+2], w) {
			t.Fatalf("reply %d is %q, want %s; all: %q", i+2, replies[i+2], w, replies)
		}
	}
	testwait.Until(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "SMTP connection closed") },
		"the connection's log line")
	for _, w := range []string{"protocol_refusals=4", "go-smtp 552 5.3.4 message_too_big", "go-smtp 452 4.5.3 too_many_recipients",
		"MAIL FROM:<evil@example.com> 550 5.7.1", "go-smtp 502 5.5.1 bad_sequence", "go-smtp 501 5.5.2 syntax"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log line lacks %s:\n%s", w, logs.String())
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP mailgate_smtp_messages_total SMTP transactions that ended, by app ("" when unknown), and reply code (250 accepted and queued; 5xx refused; 4xx temporary).
# TYPE mailgate_smtp_messages_total counter
mailgate_smtp_messages_total{app="scanner",code="452"} 1
mailgate_smtp_messages_total{app="scanner",code="550"} 1
mailgate_smtp_messages_total{app="scanner",code="552"} 1
`), "mailgate_smtp_messages_total"); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		reason, code string
	}{{"message_too_big", "552"}, {"too_many_recipients", "452"}, {"bad_sequence", "502"}, {"syntax", "501"}} {
		if n := counterValue(t, reg, "mailgate_smtp_protocol_refusals_total", map[string]string{"app": "scanner", "reason": c.reason, "code": c.code}); n != 1 {
			t.Errorf("mailgate_smtp_protocol_refusals_total{reason=%q,code=%q} = %v, want 1", c.reason, c.code, n)
		}
	}
	if n := counterValue(t, reg, "mailgate_smtp_protocol_refusals_total", nil); n != 4 {
		t.Errorf("mailgate_smtp_protocol_refusals_total sums to %v, want 4 (the door's 550 is not go-smtp's)", n)
	}
}

// counterValue sums the counters called name whose labels include labels.
func counterValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func TestReplyReader(t *testing.T) {
	t.Parallel()
	r := replyReader{atLineStart: true}
	writes := []struct {
		p    string
		want string // "" when no reply ends in p
	}{
		{"220 mailgate.test ESMTP Service Ready\r\n", "220"},
		{"250-Hello x\r\n", ""},
		{"250 SIZE 10\r\n", "250"},
		{"552 5.3.4 Max message size exceeded\r\n", "552 5.3.4"},
		{"500 5.5.2 Error: bad", "500 5.5.2"}, // a line split over two writes
		{" syntax\r\n", ""},
		{"452 4.5.3 Maximum limit of 2 recipients reached\r\n", "452 4.5.3"},
		{"220 2.0.0 Ready to start TLS\r\n", "220 2.0.0"},
		{"500 5.5.2 ciphertext from now on\r\n", ""},
	}
	for _, w := range writes {
		rep, ok := r.write([]byte(w.p))
		got := ""
		if ok {
			got = rep.String()
		}
		if got != w.want {
			t.Errorf("write %q: reply %q, want %q", w.p, got, w.want)
		}
	}
}

// Under TLS, after STARTTLS or on the implicit-TLS listener, go-smtp's own
// refusals are still counted and logged: the socket carries ciphertext, so
// they are read from go-smtp's clear copy.
func TestProtocolRefusalsUnderTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "smtp.crt"), filepath.Join(dir, "smtp.key")
	testpki.WriteSelfSigned(t, cert, key, "mailgate.test")
	reg := prometheus.NewPedanticRegistry()
	s, logs := startServerWith(t, func(o *Options) {
		o.Metrics = metrics.NewSMTP(reg)
		o.Config.SMTP.MaxRecipients = 1
		o.Config.SMTP.MaxMessageBytes = 10000
		o.Config.SMTP.ListenTLS = "127.0.0.1:0"
		o.Config.SMTP.TLS = config.SMTPTLS{CertFile: cert, KeyFile: key}
	})
	session := func(tp *textproto.Conn) {
		t.Helper()
		for _, c := range []struct {
			line string
			code int
		}{{"EHLO scanner.lan", 250}, {"MAIL FROM:<scan@contoso.com> SIZE=20000", 552}, {"MAIL FROM:<scan@contoso.com>", 250},
			{"RCPT TO:<a@contoso.com>", 250}, {"RCPT TO:<b@contoso.com>", 452}, {"RCPT TO:bad", 501},
			{"MAIL FROM:<evil@example.com>", 550}, {"RSET", 250}, {"DATA", 502}, {"QUIT", 221}} {
			if err := tp.PrintfLine("%s", c.line); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := tp.ReadResponse(c.code); err != nil {
				t.Fatalf("%s: %v %s", c.line, err, msg)
			}
		}
	}
	dial := func(addr string, implicit bool) *textproto.Conn {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		cfg := &tls.Config{InsecureSkipVerify: true} // the test's self-signed certificate
		if implicit {
			tc := tls.Client(conn, cfg)
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			tp := textproto.NewConn(tc)
			if _, _, err := tp.ReadResponse(220); err != nil {
				t.Fatal(err)
			}
			return tp
		}
		tp := textproto.NewConn(conn)
		for _, c := range []struct {
			line string
			code int
		}{{"", 220}, {"EHLO scanner.lan", 250}, {"STARTTLS", 220}} {
			if c.line != "" {
				if err := tp.PrintfLine("%s", c.line); err != nil {
					t.Fatal(err)
				}
			}
			if _, msg, err := tp.ReadResponse(c.code); err != nil {
				t.Fatalf("%q: %v %s", c.line, err, msg)
			}
		}
		tc := tls.Client(conn, cfg)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		return textproto.NewConn(tc)
	}
	session(dial(s.Addr(), false))
	session(dial(s.TLSAddr(), true))
	testwait.Until(t, 5*time.Second, func() bool { return strings.Count(logs.String(), "SMTP connection closed") == 2 },
		"both connections' log lines")
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		for _, w := range []string{"tls=true", "protocol_refusals=4", "go-smtp 552 5.3.4 message_too_big", "go-smtp 452 4.5.3 too_many_recipients",
			"go-smtp 501 5.5.2 syntax", "go-smtp 502 5.5.1 bad_sequence", "MAIL FROM:<evil@example.com> 550 5.7.1"} {
			if !strings.Contains(line, w) {
				t.Errorf("log line lacks %s:\n%s", w, line)
			}
		}
	}
	for _, c := range []struct {
		reason, code string
	}{{"message_too_big", "552"}, {"too_many_recipients", "452"}, {"syntax", "501"}, {"bad_sequence", "502"}} {
		if n := counterValue(t, reg, "mailgate_smtp_protocol_refusals_total", map[string]string{"app": "scanner", "reason": c.reason, "code": c.code}); n != 2 {
			t.Errorf("mailgate_smtp_protocol_refusals_total{reason=%q,code=%q} = %v, want 2", c.reason, c.code, n)
		}
	}
	if n := counterValue(t, reg, "mailgate_smtp_protocol_refusals_total", nil); n != 8 {
		t.Errorf("mailgate_smtp_protocol_refusals_total sums to %v, want 8 (the door's 550s are not go-smtp's)", n)
	}
}

// A MAIL FROM refused after an accepted one ends the transaction: go-smtp
// still counts the first as received, so the door itself answers the RCPT
// that follows with a bad-sequence reply, not a policy refusal for an app
// of no name, and queues nothing.
func TestRecipientAfterRefusedMailIsOutOfSequence(t *testing.T) {
	t.Parallel()
	door := &fakeDoor{}
	s, _ := startServerWith(t, func(o *Options) { o.Door = door })
	replies := converse(t, s.Addr(), "127.0.0.1", "EHLO scanner.lan", "MAIL FROM:<scan@contoso.com>",
		"MAIL FROM:<evil@example.com>", "RCPT TO:<a@contoso.com>", "DATA", "QUIT")
	if !strings.HasPrefix(replies[2], "250 ") || !strings.HasPrefix(replies[3], "550 5.7.1 ") {
		t.Fatalf("replies: %q", replies)
	}
	if !strings.HasPrefix(replies[4], "503 5.5.1 ") || !strings.Contains(replies[4], "MAIL FROM") {
		t.Errorf("RCPT after a refused MAIL FROM: %q, want 503 5.5.1 asking for MAIL FROM", replies[4])
	}
	if strings.HasPrefix(replies[5], "354") {
		t.Errorf("DATA accepted after a refused MAIL FROM: %q", replies)
	}
	if len(door.accepted) != 0 {
		t.Errorf("queued %d messages", len(door.accepted))
	}
}
