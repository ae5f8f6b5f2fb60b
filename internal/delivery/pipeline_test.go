package delivery

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/postfixtest"
	"github.com/mailgate/mailgate/test/testwait"
)

// dialPlain opens a session without TLS or AUTH to host:port, closed when
// the test ends.
func dialPlain(t *testing.T, host string, port int) *Conn {
	t.Helper()
	route := &config.Route{Name: "plain", Type: config.RouteSMTP, Host: host, Port: port,
		TLS: config.RouteTLS{Mode: config.TLSNone}}
	// A short command timeout: a client that waits for a reply the peer
	// holds back fails in seconds, not minutes.
	d, err := NewDialer(route, DialerOptions{HelloName: "mailgate.test", CommandTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial(context.Background(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// sendCase is one transaction on a shared session and what must come of
// it. Running them one after the other on one connection also proves the
// session stays in step: a reply read for the wrong command would show in
// the next case.
type sendCase struct {
	name     string
	from     string
	rcpts    []string
	stage    string // the StepError's stage; "" for no error
	code     int    // the StepError's reply code, or Result.Reply's when sent
	enhanced string
	accepted []string
	refused  map[string]int // recipient -> reply code
}

func (tc sendCase) check(t *testing.T, c *Conn) {
	t.Helper()
	res, err := c.Send(tc.from, tc.rcpts, []byte("Subject: "+tc.name+"\r\n\r\nhello\r\n"))
	if tc.stage != "" {
		var se *StepError
		if !errors.As(err, &se) || se.Stage != tc.stage || se.Reply == nil || se.Reply.Code != tc.code ||
			(tc.enhanced != "" && se.Reply.Enhanced != tc.enhanced) {
			t.Fatalf("%s: error %v, want stage %s with a %d %s reply", tc.name, err, tc.stage, tc.code, tc.enhanced)
		}
	} else if err != nil {
		t.Fatalf("%s: %v", tc.name, err)
	}
	if len(tc.accepted) > 0 && tc.stage == "" && (res.Reply.Code != tc.code || res.Reply.Enhanced != tc.enhanced) {
		t.Fatalf("%s: final reply %s, want %d %s", tc.name, res.Reply, tc.code, tc.enhanced)
	}
	if !reflect.DeepEqual(res.Accepted, tc.accepted) {
		t.Fatalf("%s: accepted %v, want %v", tc.name, res.Accepted, tc.accepted)
	}
	refused := map[string]int{}
	for _, r := range res.Refused {
		refused[r.Recipient] = r.Reply.Code
	}
	if len(refused) != len(tc.refused) || (len(tc.refused) > 0 && !reflect.DeepEqual(refused, tc.refused)) {
		t.Fatalf("%s: refused %+v, want %v", tc.name, res.Refused, tc.refused)
	}
}

// Postfix 3.7 advertises PIPELINING: every outcome of a pipelined
// transaction comes out as it did command by command, with Postfix's own
// replies, and the session carries the next message after each failure.
// reject_unauth_pipelining would refuse DATA had a group not ended at DATA
// (the body sent before 354, say).
func TestPipelinedTransactionsAgainstPostfix(t *testing.T) {
	t.Parallel()
	pf := postfixtest.Start(t, postfixtest.Options{Main: map[string]string{
		"strict_rfc821_envelopes": "yes",
		// Sender checks at MAIL FROM rather than at the first RCPT.
		"smtpd_delay_reject":           "no",
		"smtpd_sender_restrictions":    "check_sender_access inline:{refused@contoso.com=REJECT}",
		"smtpd_recipient_restrictions": "check_recipient_access inline:{{nobody@example.com=550 5.1.1 no such user}, {gone@example.com=550 5.1.1 no such user}}",
		"smtpd_data_restrictions":      "check_sender_access inline:{nodata@contoso.com=REJECT}, reject_unauth_pipelining",
	}})
	c := dialPlain(t, pf.Host, pf.Port)
	if !c.pipelining {
		t.Fatal("Postfix did not advertise PIPELINING: this test would not exercise the pipelined path")
	}
	for _, tc := range []sendCase{
		{name: "one recipient refused", from: "alerts@contoso.com",
			rcpts: []string{"ops@example.com", "nobody@example.com", "dev@example.com"},
			code:  250, enhanced: "2.0.0", accepted: []string{"ops@example.com", "dev@example.com"},
			refused: map[string]int{"nobody@example.com": 550}},
		{name: "MAIL refused", from: "refused@contoso.com", rcpts: []string{"ops@example.com", "dev@example.com"},
			stage: StageMail, code: 554, enhanced: "5.7.1"},
		{name: "every recipient refused", from: "alerts@contoso.com", rcpts: []string{"nobody@example.com", "gone@example.com"},
			refused: map[string]int{"nobody@example.com": 550, "gone@example.com": 550}},
		{name: "DATA refused", from: "nodata@contoso.com", rcpts: []string{"ops@example.com"},
			stage: StageData, code: 554, enhanced: "5.7.1", accepted: []string{"ops@example.com"}},
		{name: "sent after all that", from: "alerts@contoso.com", rcpts: []string{"ops@example.com"},
			code: 250, enhanced: "2.0.0", accepted: []string{"ops@example.com"}},
	} {
		tc.check(t, c)
	}
	c.Close()
	waitDisconnect(t, pf)
	if strings.Contains(pf.Log(), "improper command pipelining") {
		t.Fatalf("Postfix saw improper pipelining:\n%s", pf.Log())
	}
}

// A server that does not advertise PIPELINING gets one command at a time:
// this Postfix hides PIPELINING from its EHLO reply, and a relay in front of
// it records which commands the client sent between two replies. A serial
// client's flights follow from causality (each command waits for the reply
// before it), so they do not depend on timing; a client that pipelined
// unasked would put MAIL, RCPT and DATA in one flight. (Postfix's own
// reject_unauth_pipelining would not tell: after EHLO it flags only
// commands that must end a group, such as DATA, when more input follows.)
func TestSerialWhenPipeliningIsNotOffered(t *testing.T) {
	t.Parallel()
	pf := postfixtest.Start(t, postfixtest.Options{Main: map[string]string{
		"smtpd_discard_ehlo_keywords":  "pipelining",
		"smtpd_recipient_restrictions": "check_recipient_access inline:{{nobody@example.com=550 5.1.1 no such user}}",
	}})
	relay := startGroupingRelay(t, pf.Addr(), false)
	host, port := splitAddr(t, relay.addr)
	c := dialPlain(t, host, port)
	if c.pipelining {
		t.Fatal("Postfix advertised PIPELINING despite smtpd_discard_ehlo_keywords")
	}
	for _, tc := range []sendCase{
		{name: "one recipient refused", from: "alerts@contoso.com",
			rcpts: []string{"ops@example.com", "nobody@example.com", "dev@example.com"},
			code:  250, enhanced: "2.0.0", accepted: []string{"ops@example.com", "dev@example.com"},
			refused: map[string]int{"nobody@example.com": 550}},
		{name: "second message", from: "alerts@contoso.com", rcpts: []string{"ops@example.com"},
			code: 250, enhanced: "2.0.0", accepted: []string{"ops@example.com"}},
	} {
		tc.check(t, c)
	}
	mail := "MAIL FROM:<alerts@contoso.com> BODY=8BITMIME"
	want := [][]string{{"EHLO mailgate.test"},
		{mail}, {"RCPT TO:<ops@example.com>"}, {"RCPT TO:<nobody@example.com>"}, {"RCPT TO:<dev@example.com>"}, {"DATA"}, {"."},
		{mail}, {"RCPT TO:<ops@example.com>"}, {"DATA"}, {"."}}
	if got := relay.Flights(); !reflect.DeepEqual(got, want) {
		t.Fatalf("client flights (lines sent between two replies):\n got %q\nwant %q", got, want)
	}
}

// waitDisconnect waits for Postfix to log the end of the session, after
// anything it logs about the session itself.
func waitDisconnect(t *testing.T, pf *postfixtest.Server) {
	t.Helper()
	testwait.Until(t, 20*time.Second, func() bool { return strings.Contains(pf.Log(), "disconnect from") },
		"Postfix to log the disconnect")
}

// The simulator (go-smtp, which advertises PIPELINING) refuses the way
// Exchange Online does: the refusals reach the worker with the stage and
// reply that decide and Diagnose expect, and a dropped connection is an
// error without a reply.
func TestPipelinedRefusalsFromTheSimulator(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, exosim.Options{Mailboxes: map[string]string{"relay@contoso.com": "pw"}})
	route := &config.Route{Name: "m365", Type: config.RouteSMTPAuth, Host: sim.Host(), Port: sim.Port(),
		TLS:  config.RouteTLS{Mode: config.TLSStartTLS, CAFile: sim.CAFile()},
		Auth: config.RouteAuth{Mechanism: config.MechLogin, Username: "relay@contoso.com", Password: "pw"}}
	auth, err := AuthenticatorFor(route)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDialer(route, DialerOptions{HelloName: "mailgate.test", Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial(context.Background(), "relay@contoso.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if !c.pipelining {
		t.Fatal("the simulator did not advertise PIPELINING")
	}
	relay := "relay@contoso.com"
	two := []string{"ops@contoso.com", "dev@contoso.com"}
	steps := []struct {
		script []exosim.Reply
		tc     sendCase
	}{
		{tc: sendCase{name: "Send As denied at MAIL", from: "ceo@contoso.com", rcpts: two,
			stage: StageMail, code: 550, enhanced: "5.7.60"}},
		{script: []exosim.Reply{{Stage: exosim.StageRcpt, Code: 550, Enhanced: "5.1.10", Text: "recipient not found"}},
			tc: sendCase{name: "one recipient refused", from: relay, rcpts: two, code: 250, enhanced: "2.0.0",
				accepted: []string{"dev@contoso.com"}, refused: map[string]int{"ops@contoso.com": 550}}},
		{script: []exosim.Reply{{Stage: exosim.StageRcpt, Code: 550, Enhanced: "5.1.10"}, {Stage: exosim.StageRcpt, Code: 451, Enhanced: "4.4.0"}},
			tc: sendCase{name: "every recipient refused", from: relay, rcpts: two,
				refused: map[string]int{"ops@contoso.com": 550, "dev@contoso.com": 451}}},
		{script: []exosim.Reply{{Stage: exosim.StageData, Code: 451, Enhanced: "4.7.500", Text: "server busy"}},
			tc: sendCase{name: "refused at the end of DATA", from: relay, rcpts: two,
				stage: StageData, code: 451, enhanced: "4.7.500", accepted: two}},
		{tc: sendCase{name: "sent after all that", from: relay, rcpts: two, code: 250, enhanced: "2.0.0", accepted: two}},
	}
	for _, s := range steps {
		sim.Script(s.script...)
		s.tc.check(t, c)
	}
	// The worker's reading of a Send As refusal is unchanged: its hint.
	_, err = c.Send("ceo@contoso.com", two, []byte("Subject: x\r\n\r\nx\r\n"))
	var se *StepError
	if !errors.As(err, &se) || !strings.Contains(Diagnose(route, se).Hint, "Add-RecipientPermission") {
		t.Fatalf("Send As refusal %v: no Send As hint", err)
	}
	if n := len(sim.Messages()); n != 2 {
		t.Fatalf("the simulator kept %d messages, want 2", n)
	}

	// A connection dropped before the RCPT replies: no reply, so the worker
	// drops the connection.
	sim.Script(exosim.Reply{Stage: exosim.StageRcpt, Drop: true})
	_, err = c.Send(relay, two, []byte("Subject: x\r\n\r\nx\r\n"))
	if !errors.As(err, &se) || se.Stage != StageRcpt || se.Reply != nil {
		t.Fatalf("dropped connection: %v, want a rcpt error without a reply", err)
	}
}

// With PIPELINING offered, a message costs two round trips: MAIL FROM,
// every RCPT TO and DATA in one flight, then the body. The peer is a
// go-smtp server behind a relay that holds back the replies to a group
// until the group ends with DATA, as RFC 2920 section 3.2 lets a server
// buffer the replies to grouped commands: a client that waited for each
// reply would stall there until its deadline and fail the test, and the
// flights the relay records do not depend on timing. The body keeps its
// leading dots (dot-stuffed on the wire, restored by the server).
func TestPipelinedEnvelopeTakesOneFlight(t *testing.T) {
	t.Parallel()
	sink := startSink(t)
	relay := startGroupingRelay(t, sink.addr, true)
	host, port := splitAddr(t, relay.addr)
	c := dialPlain(t, host, port)

	rcpts := []string{"a@example.com", "b@example.com", "c@example.com"}
	body := "Subject: dots\r\n\r\n.leading dot\r\n.\r\nend\r\n"
	for range 2 {
		res, err := c.Send("alerts@contoso.com", rcpts, []byte(body))
		if err != nil || len(res.Accepted) != 3 || res.Reply.Code != 250 {
			t.Fatalf("send: %+v, %v", res, err)
		}
	}
	group := []string{"MAIL FROM:<alerts@contoso.com> BODY=8BITMIME SMTPUTF8",
		"RCPT TO:<a@example.com>", "RCPT TO:<b@example.com>", "RCPT TO:<c@example.com>", "DATA"}
	want := [][]string{{"EHLO mailgate.test"}, group, {"."}, group, {"."}}
	if got := relay.Flights(); !reflect.DeepEqual(got, want) {
		t.Fatalf("client flights (lines sent between two replies):\n got %q\nwant %q", got, want)
	}
	for i, m := range sink.Messages() {
		if m != body {
			t.Fatalf("message %d arrived as %q, want %q", i, m, body)
		}
	}
}

// A server may answer DATA with 354 although it accepted no recipient
// (RFC 2920 section 1 knows such servers); the client then ends the empty
// message with a lone "." (section 3.1) and does not count it as sent.
// Postfix, go-smtp and the simulator all refuse that DATA (554, 502), so
// the peer here is a few lines of Go that behave like those servers.
func TestLoneDotWhenDATAIsAcceptedWithoutRecipients(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var (
		mu   sync.Mutex
		seen []string // commands, and "<n bytes>" for each message
	)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r, w := bufio.NewReader(conn), conn
		io.WriteString(w, "220 lax.test ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.TrimRight(line, "\r\n")
			mu.Lock()
			seen = append(seen, cmd)
			mu.Unlock()
			switch verb := strings.ToUpper(strings.Fields(cmd + " x")[0]); {
			case verb == "EHLO":
				io.WriteString(w, "250-lax.test\r\n250 PIPELINING\r\n")
			case verb == "RCPT" && !strings.Contains(cmd, "ok@"):
				io.WriteString(w, "550 5.1.1 unknown\r\n")
			case verb == "DATA":
				io.WriteString(w, "354 go ahead\r\n")
				n := 0
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
					n += len(l)
				}
				mu.Lock()
				seen = append(seen, "<"+strconv.Itoa(n)+" bytes>")
				mu.Unlock()
				io.WriteString(w, "250 2.0.0 queued\r\n")
			case verb == "QUIT":
				io.WriteString(w, "221 bye\r\n")
				return
			default:
				io.WriteString(w, "250 2.0.0 ok\r\n")
			}
		}
	}()
	host, port := splitAddr(t, ln.Addr().String())
	c := dialPlain(t, host, port)
	body := []byte("Subject: x\r\n\r\nhello\r\n")
	res, err := c.Send("alerts@contoso.com", []string{"nobody@example.com"}, body)
	if err != nil || len(res.Accepted) != 0 || len(res.Refused) != 1 || res.Reply.Code != 0 {
		t.Fatalf("no recipient accepted: %+v, %v; want no error, one refused, no final reply", res, err)
	}
	res, err = c.Send("alerts@contoso.com", []string{"ok@example.com"}, body)
	if err != nil || res.Reply.Code != 250 {
		t.Fatalf("the next message: %+v, %v", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"EHLO mailgate.test",
		"MAIL FROM:<alerts@contoso.com>", "RCPT TO:<nobody@example.com>", "DATA", "<0 bytes>", "RSET",
		"MAIL FROM:<alerts@contoso.com>", "RCPT TO:<ok@example.com>", "DATA", "<" + strconv.Itoa(len(body)) + " bytes>"}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("the peer saw\n %q\nwant\n %q", seen, want)
	}
}

// An address with CR or LF never reaches the wire, where it would end the
// command and start another.
func TestLineBreakInAddressIsRefusedBeforeWriting(t *testing.T) {
	t.Parallel()
	sink := startSink(t)
	host, port := splitAddr(t, sink.addr)
	c := dialPlain(t, host, port)
	for _, tc := range []struct {
		from  string
		rcpts []string
		stage string
	}{
		{"alerts@contoso.com\r\nRCPT TO:<x@example.com>", []string{"ops@example.com"}, StageMail},
		{"alerts@contoso.com", []string{"ops@example.com", "b@example.com\nDATA"}, StageRcpt},
	} {
		_, err := c.Send(tc.from, tc.rcpts, []byte("Subject: x\r\n\r\nx\r\n"))
		var se *StepError
		if !errors.As(err, &se) || se.Stage != tc.stage || se.Reply != nil {
			t.Fatalf("%q to %q: %v, want a %s error without a reply", tc.from, tc.rcpts, err, tc.stage)
		}
	}
	// Nothing was written: the session is clean for the next message.
	if res, err := c.Send("alerts@contoso.com", []string{"ops@example.com"}, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("next message: %+v, %v", res, err)
	}
	if n := len(sink.Messages()); n != 1 {
		t.Fatalf("the server got %d messages, want 1", n)
	}
}

func splitAddr(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

// sink is a go-smtp server on loopback, without TLS or AUTH, that accepts
// every message and keeps its bytes. It offers PIPELINING, 8BITMIME and
// SMTPUTF8.
type sink struct {
	addr string
	mu   sync.Mutex
	msgs []string
}

func startSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return sinkSession{s}, nil }))
	srv.Domain = "sink.test"
	srv.EnableSMTPUTF8 = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *sink) Messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

type sinkSession struct{ s *sink }

func (sinkSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (ss sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, string(b))
	ss.s.mu.Unlock()
	return nil
}
func (sinkSession) Reset()        {}
func (sinkSession) Logout() error { return nil }

// groupingRelay relays one SMTP session in clear text and records the
// client's lines in flights: the lines it sent between two replies it
// received (a message's content counts as its final "."). With hold, the
// replies that follow a MAIL FROM are held back until the client has sent
// DATA.
type groupingRelay struct {
	addr string
	hold bool

	mu       sync.Mutex
	flights  [][]string
	replies  int // reply lines passed to the client so far
	atReply  int // replies when the last line was recorded
	holding  bool
	held     []string
	inData   bool // between a 354 and the client's "."
	toClient net.Conn
}

func startGroupingRelay(t *testing.T, upstream string, hold bool) *groupingRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &groupingRelay{addr: ln.Addr().String(), hold: hold}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		client, err := ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", upstream)
		if err != nil {
			client.Close()
			return
		}
		g.toClient = client
		closeBoth := func() { client.Close(); server.Close() }
		wg.Add(2)
		go func() { defer wg.Done(); defer closeBoth(); g.fromServer(server) }()
		go func() { defer wg.Done(); defer closeBoth(); g.fromClient(client, server) }()
	}()
	return g
}

func (g *groupingRelay) fromServer(server net.Conn) {
	r := bufio.NewReader(server)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		g.mu.Lock()
		if g.holding {
			g.held = append(g.held, line)
		} else {
			g.inData = g.inData || strings.HasPrefix(line, "354 ")
			g.forward(line)
		}
		g.mu.Unlock()
	}
}

func (g *groupingRelay) fromClient(client, server net.Conn) {
	r := bufio.NewReader(client)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		g.mu.Lock()
		switch cmd := strings.TrimRight(line, "\r\n"); {
		case g.inData:
			if cmd == "." {
				g.record(cmd)
				g.inData = false
			}
		case strings.HasPrefix(strings.ToUpper(cmd), "MAIL FROM:"):
			g.record(cmd)
			g.holding = g.hold
		case strings.EqualFold(cmd, "DATA"):
			g.record(cmd)
			// The 354 comes later, from the server itself.
			g.holding = false
			for _, l := range g.held {
				g.forward(l)
			}
			g.held = nil
		default:
			g.record(cmd)
		}
		g.mu.Unlock()
		if _, err := io.WriteString(server, line); err != nil {
			return
		}
	}
}

func (g *groupingRelay) forward(line string) {
	_, _ = io.WriteString(g.toClient, line)
	g.replies++
}

func (g *groupingRelay) record(cmd string) {
	if len(g.flights) == 0 || g.replies != g.atReply {
		g.flights = append(g.flights, nil)
	}
	g.flights[len(g.flights)-1] = append(g.flights[len(g.flights)-1], cmd)
	g.atReply = g.replies
}

// Flights returns the recorded flights, QUIT excluded.
func (g *groupingRelay) Flights() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out [][]string
	for _, f := range g.flights {
		if len(f) == 1 && strings.EqualFold(f[0], "QUIT") {
			continue
		}
		out = append(out, append([]string(nil), f...))
	}
	return out
}
