package sendmail

import (
	"bytes"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/test/testbin"
)

// conf is the host's sendmail.conf: local names get the company's domain,
// and deploy is an alias.
func hostConf(t *testing.T, extra ...string) string {
	return writeConf(t, append([]string{
		"# what /etc/mailgate/sendmail.conf holds on a host",
		"local_domain = contoso.com",
		"alias deploy = ops@contoso.com",
	}, extra...)...)
}

// Each caller's exact argument list and the message it writes (bare LF, as
// they all write it), through the real binary to a real mailgate and on to
// the simulator.
func TestCallers(t *testing.T) {
	s := startServer(t)
	tok := s.token("cron")
	in := invocation{conf: hostConf(t), url: s.base, tok: tok}

	tests := []struct {
		caller   string
		asLink   bool // run as /usr/sbin/sendmail rather than `mailgate sendmail`
		args     []string
		stdin    string
		rcpt     []string
		from     string   // the delivered From address
		absent   []string // text that must not be delivered
		contains []string // text that must be delivered
	}{
		{caller: "cronie", asLink: true,
			args: []string{"-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"},
			stdin: "From: \"(Cron Daemon)\" <root>\nTo: root\nSubject: Cron <root@web1> /usr/local/bin/backup\n" +
				"Content-Type: text/plain; charset=UTF-8\nAuto-Submitted: auto-generated\nPrecedence: bulk\n" +
				"X-Cron-Env: <SHELL=/bin/sh>\n\nbackup done\n.\nthe line after a lone dot (kept: -i)\n",
			rcpt: []string{"root@contoso.com"}, from: defaultFrom,
			contains: []string{"\r\n.\r\nthe line after a lone dot (kept: -i)\r\n"}},
		{caller: "Debian cron", asLink: true,
			args: []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "deploy"},
			stdin: "From: root (Cron Daemon)\nTo: deploy\nSubject: Cron <deploy@web1> report\n" +
				"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\nrapport über alles\n",
			rcpt: []string{"ops@contoso.com"}, from: defaultFrom,
			contains: []string{"To: ops@contoso.com\r\n", "rapport über alles\r\n"}},
		{caller: "PHP mail()", asLink: true,
			args: []string{"-t", "-i"},
			stdin: "To: customer@example.com\nSubject: Your order\nFrom: Shop <shop@alerts.contoso.com>\n" +
				"Bcc: archive@contoso.com\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\nThank you.\n",
			rcpt: []string{"customer@example.com", "archive@contoso.com"}, from: "shop@alerts.contoso.com",
			absent: []string{"archive@contoso.com", "Bcc:"}},
		{caller: "PHP mail() with -f and no From", asLink: true,
			args:  []string{"-t", "-i", "-fshop@alerts.contoso.com"},
			stdin: "To: customer@example.com\nSubject: Order 2\n\nThanks again.\n",
			rcpt:  []string{"customer@example.com"}, from: "shop@alerts.contoso.com"},
		{caller: "bsd-mailx (as the issue lists it)",
			args:  []string{"-oi", "-f", "ops@alerts.contoso.com", "-t"},
			stdin: "From: ops@alerts.contoso.com\nTo: root, audit@example.com\nSubject: mailx args\n\nhi\n",
			rcpt:  []string{"root@contoso.com", "audit@example.com"}, from: "ops@alerts.contoso.com"},
		{caller: "logwatch",
			args: []string{"-t"},
			stdin: "From: logwatch@alerts.contoso.com\nTo: root\nSubject: Logwatch for web1 (Linux)\n" +
				"Content-Type: text/plain; charset=\"iso-8859-1\"\n\n ### Logwatch ###\n.\nafter the lone dot (dropped: no -i)\n",
			rcpt: []string{"root@contoso.com"}, from: "logwatch@alerts.contoso.com",
			absent: []string{"after the lone dot"}},
		{caller: "mdadm", asLink: true,
			args: []string{"-t"},
			stdin: "From: mdadm monitoring <root>\nTo: root\nSubject: Fail event on /dev/md0:web1\n\n" +
				"This is an automatically generated mail message from mdadm\n",
			rcpt: []string{"root@contoso.com"}, from: defaultFrom},
		{caller: "a script with recipients as arguments",
			args:  []string{"-i", "--", "a@contoso.com", "b@example.com"},
			stdin: "Subject: args only\nBcc: secret@contoso.com\n\nx\n",
			rcpt:  []string{"a@contoso.com", "b@example.com"}, from: defaultFrom,
			absent: []string{"secret@contoso.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.caller, func(t *testing.T) {
			var r result
			if tt.asLink {
				r = in.sendmail(t, tt.stdin, tt.args...)
			} else {
				r = in.subcommand(t, tt.stdin, tt.args...)
			}
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			h, err := mail.ReadMessage(strings.NewReader(tt.stdin))
			if err != nil {
				t.Fatal(err)
			}
			m := s.delivered(tok, h.Header.Get("Subject"))
			checkDelivered(t, m.Data, m.Rcpt, tt.rcpt, tt.from)
			for _, a := range tt.absent {
				if bytes.Contains(m.Data, []byte(a)) {
					t.Errorf("%q was delivered:\n%s", a, m.Data)
				}
			}
			for _, c := range tt.contains {
				if !bytes.Contains(m.Data, []byte(c)) {
					t.Errorf("%q was not delivered:\n%s", c, m.Data)
				}
			}
		})
	}

	// The real mail(1) of Debian (bsd-mailx) with the shim as its sendmail:
	// it runs `sendmail -i -t [-f from]` and writes the header itself.
	mailx := testbin.Path(t, "bsd-mailx", "bsd-mailx")
	rc := filepath.Join(t.TempDir(), "mailrc")
	if err := os.WriteFile(rc, []byte("set sendmail="+sendmailLink+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		from string
	}{
		{"mail -r", []string{"-s", "mailx with -r", "-r", "Ops <ops@alerts.contoso.com>", "root", "audit@example.com"}, "ops@alerts.contoso.com"},
		{"mail", []string{"-s", "mailx plain", "root", "audit@example.com"}, defaultFrom},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(mailx, tt.args...)
			cmd.Env = append(in.env(t), "MAILRC="+rc)
			cmd.Stdin = strings.NewReader("hello from mail(1)\n")
			if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
				t.Fatalf("bsd-mailx: %v, output %q", err, out)
			}
			m := s.delivered(tok, tt.args[1])
			checkDelivered(t, m.Data, m.Rcpt, []string{"root@contoso.com", "audit@example.com"}, tt.from)
		})
	}
}

// checkDelivered checks the envelope, the From and that every line ends
// in CRLF.
func checkDelivered(t *testing.T, data []byte, rcpt, wantRcpt []string, wantFrom string) {
	t.Helper()
	got, want := slices.Sorted(slices.Values(rcpt)), slices.Sorted(slices.Values(wantRcpt))
	if !slices.Equal(got, want) {
		t.Errorf("delivered to %q, want %q", got, want)
	}
	h, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	from, err := mail.ParseAddress(h.Header.Get("From"))
	if err != nil || from.Address != wantFrom {
		t.Errorf("From %q (%v), want %s", h.Header.Get("From"), err, wantFrom)
	}
	if n := bytes.Count(data, []byte("\n")); n != bytes.Count(data, []byte("\r\n")) {
		t.Errorf("%d bare LF in the delivered message:\n%q", n-bytes.Count(data, []byte("\r\n")), data)
	}
}

// The exit codes from sysexits.h that callers act on, each with one line
// on stderr saying why, and nothing queued.
func TestExitCodes(t *testing.T) {
	s := startServer(t)
	tok := s.token("cron")
	conf := hostConf(t)
	good := invocation{conf: conf, url: s.base, tok: tok}
	msg := "From: ops@alerts.contoso.com\nTo: a@contoso.com\nSubject: refused\n\nx\n"
	tests := []struct {
		name   string
		in     invocation
		args   []string
		stdin  string
		code   int
		reason string
	}{
		{"bad token", invocation{conf: conf, url: s.base, tok: "not-a-token"}, []string{"-t", "-i"}, msg, 77, "401"},
		{"From outside the policy", good, []string{"-t", "-i"},
			"From: boss@contoso.com\nTo: a@contoso.com\nSubject: x\n\nx\n", 77, "from_not_allowed"},
		{"invalid message", good, []string{"-t", "-i"},
			"From: ops@alerts.contoso.com\nTo: a@contoso.com\nAuthentication-Results: spoofed; dkim=pass\nSubject: x\n\nx\n", 65, "Authentication-Results"},
		{"bad option", good, []string{"-bd"}, "", 64, "-bd"},
		{"local name without a rule", invocation{conf: writeConf(t, "# no local_domain"), url: s.base, tok: tok},
			[]string{"-i", "root"}, msg, 67, "local_domain"},
		{"missing configuration file", invocation{conf: "/nonexistent/sendmail.conf", url: s.base, tok: tok},
			[]string{"-t"}, msg, 78, "/nonexistent/sendmail.conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.in.sendmail(t, tt.stdin, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, tt.code, r.stderr)
			}
			checkReason(t, r.stderr, tt.reason)
		})
	}
	if n := s.queued(); n != 0 {
		t.Errorf("%d messages queued by refused submissions", n)
	}

	// The server stopped and no spool: EX_TEMPFAIL.
	s.stop()
	r := good.sendmail(t, msg, "-t", "-i")
	if r.code != 75 {
		t.Errorf("server stopped: exit %d, want 75 (stderr %q)", r.code, r.stderr)
	}
	checkReason(t, r.stderr, "not reachable")
}

func checkReason(t *testing.T, stderr, want string) {
	t.Helper()
	if !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr %q: want one line mentioning %q", stderr, want)
	}
}
